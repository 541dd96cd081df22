"""Did the generator memorise its training images? Each generated image's nearest training
images, and the distance to the nearest against the same distance for real images the GAN
never saw: a generator that copies its training set draws images much nearer to it than new
real images lie. NumPy only; the distances are Euclidean, in pixel space or in a feature space.
"""
import numpy as np

ROWS = 1000  # references per block: queries x ROWS squared distances at a time
MEMORISED = 0.5  # generated images this much nearer than held-out ones (medians): memorised


def nearest(queries, references, k=1):
    """(distances, indices) [n, k] of each query's k nearest references, nearest first (the
    lower index first among equals). The references are read ROWS at a time, so they may be
    many."""
    queries = queries.reshape(len(queries), -1).astype(np.float64)
    squared_queries = np.sum(queries ** 2, axis=1)[:, None]
    found_d = np.zeros((len(queries), 0))
    found_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(references), ROWS):
        block = references[start:start + ROWS].reshape(-1, queries.shape[1]).astype(np.float64)
        squared = squared_queries - 2 * queries @ block.T + np.sum(block ** 2, axis=1)[None]
        found_d = np.concatenate([found_d, squared], axis=1)
        found_i = np.concatenate([found_i, np.broadcast_to(start + np.arange(len(block)),
                                                           squared.shape)], axis=1)
        order = np.argsort(found_d, axis=1, kind="stable")[:, :k]
        found_d = np.take_along_axis(found_d, order, axis=1)
        found_i = np.take_along_axis(found_i, order, axis=1)
    return np.sqrt(np.maximum(found_d, 0.0)), found_i


def memorisation(generated, held_out, training):
    """The medians of the distances from generated and from held-out images to their nearest
    training image, their ratio, and whether the generated ones lie so much nearer that the
    generator has memorised (ratio below MEMORISED)."""
    generated_d = float(np.median(nearest(generated, training)[0]))
    held_out_d = float(np.median(nearest(held_out, training)[0]))
    ratio = generated_d / held_out_d if held_out_d else float("inf")
    return {"generated_median": generated_d, "held_out_median": held_out_d, "ratio": ratio,
            "memorised": ratio < MEMORISED}
