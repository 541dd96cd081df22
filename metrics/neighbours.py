"""Did the generator memorise its training images? Each generated image's nearest training
images, and the distance to the nearest against the same distance for real images the GAN
never saw: a generator that copies its training set draws images much nearer to it than new
real images lie. NumPy only; the distances are Euclidean, in pixel space or in a feature space.
"""
import numpy as np

ROWS = 1000  # queries per block: the block of squared distances stays a few MB
MEMORISED = 0.5  # generated images this much nearer than held-out ones (medians): memorised


def nearest(queries, references, k=1):
    """(distances, indices) [n, k] of each query's k nearest references, nearest first."""
    queries = queries.reshape(len(queries), -1).astype(np.float64)
    references = references.reshape(len(references), -1).astype(np.float64)
    norms = np.sum(references ** 2, axis=1)
    found_d, found_i = [], []
    for start in range(0, len(queries), ROWS):
        block = queries[start:start + ROWS]
        squared = np.sum(block ** 2, axis=1)[:, None] - 2 * block @ references.T + norms[None]
        order = np.argsort(squared, axis=1, kind="stable")[:, :k]
        found_i.append(order)
        found_d.append(np.sqrt(np.maximum(np.take_along_axis(squared, order, axis=1), 0.0)))
    return np.concatenate(found_d), np.concatenate(found_i)


def memorisation(generated, held_out, training):
    """The medians of the distances from generated and from held-out images to their nearest
    training image, their ratio, and whether the generated ones lie so much nearer that the
    generator has memorised (ratio below MEMORISED)."""
    generated_d = float(np.median(nearest(generated, training)[0]))
    held_out_d = float(np.median(nearest(held_out, training)[0]))
    ratio = generated_d / held_out_d if held_out_d else float("inf")
    return {"generated_median": generated_d, "held_out_median": held_out_d, "ratio": ratio,
            "memorised": ratio < MEMORISED}
