"""Improved precision and recall (Kynkäänniemi et al. 2019): each side's features, with a ball
around each reaching to its k-th nearest neighbour, stand for that side's manifold. Precision,
the share of generated features inside the real manifold, falls as fidelity worsens; recall,
the share of real features inside the generated one, falls as the generator drops modes.
"""
import numpy as np

K = 3  # the paper's neighbourhood size, and stylegan2-ada's pr50k3
ROWS = 1000  # distances held at a time, never all N x N: ROWS x N float32, 200 MB at N = 50,000


def squared_norms(features):
    return np.einsum("ij,ij->i", features, features)


def squared_distances(points, others, others_squared):
    """||p - o||^2 of every point p (a row) and other o (a column), as ||p||^2 - 2 p.o + ||o||^2:
    one matrix product, the fast way, and in place so that the block is the only matrix of its
    size. Rounding can make it slightly negative; it is clipped at 0."""
    block = points @ others.T
    block *= -2
    block += squared_norms(points)[:, None]
    block += others_squared
    return np.maximum(block, 0, out=block)


def radii(features, k=K, rows=ROWS):
    """Squared distance from each feature to its k-th nearest neighbour in its own set."""
    squared = squared_norms(features)
    found = []
    for start in range(0, len(features), rows):
        block = squared_distances(features[start:start + rows], features, squared)
        block.partition(k, axis=1)
        # Index k, not k - 1: the nearest, at index 0, is the feature itself. Copied, since a
        # view would keep the whole block alive.
        found.append(block[:, k].copy())
        del block  # before the next one is made: one block in memory at a time, not two
    return np.concatenate(found)


def precision_recall(real, generated, k=K, rows=ROWS):
    """(precision, recall): the share of generated features within the k-NN radius of some real
    feature, and the share of real features within that of some generated feature.

    Both shares read the same real x generated distances, once: precision along its columns,
    recall along its rows. rows sets the memory used; the result does not depend on it, but for
    rounding on a ball's border.
    """
    # float32: the features come from the network in it; rounding moves a squared distance by
    # about 1e-7 of the squared norms, which decides a ball's border only for a feature that
    # lies on it within that; and it takes half the time and memory of float64.
    real, generated = (np.asarray(a, np.float32) for a in (real, generated))
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"precision and recall need more than k = {k} features on each side, "
                         f"not {len(real)} real and {len(generated)} generated")
    real_radii, generated_radii = radii(real, k, rows), radii(generated, k, rows)
    generated_squared = squared_norms(generated)
    in_real = np.zeros(len(generated), bool)
    in_generated = []
    for start in range(0, len(real), rows):
        block = squared_distances(real[start:start + rows], generated, generated_squared)
        in_real |= (block <= real_radii[start:start + rows, None]).any(axis=0)
        in_generated.append((block <= generated_radii).any(axis=1))
        del block
    return float(in_real.mean()), float(np.concatenate(in_generated).mean())
