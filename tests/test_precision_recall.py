"""metrics/precision_recall.py: the cases whose answer is known, agreement with the definition
computed by brute force, and results that do not depend on how many rows of distances are held
at a time."""
import numpy as np
import pytest

from metrics.precision_recall import precision_recall, radii


def brute_force_precision_recall(real, generated, k):
    """The definition, one pair at a time, in float64: a feature's radius is the distance to its
    k-th nearest neighbour among the other features of its set."""
    def radius(features, i):
        others = [np.linalg.norm(features[i] - features[j]) for j in range(len(features)) if j != i]
        return sorted(others)[k - 1]

    def share_inside(probes, manifold):
        balls = [(centre, radius(manifold, i)) for i, centre in enumerate(manifold)]
        return np.mean([any(np.linalg.norm(probe - centre) <= r for centre, r in balls)
                        for probe in probes])

    return share_inside(generated, real), share_inside(real, generated)


def test_identical_sets_have_precision_and_recall_one():
    features = np.random.default_rng(0).normal(size=(100, 16))
    assert precision_recall(features, features) == (1.0, 1.0)


def test_covering_one_of_two_clusters_is_precise_and_recalls_half():
    rng = np.random.default_rng(1)
    real = np.concatenate([rng.normal(size=(250, 2)), 100 + rng.normal(size=(250, 2))])
    generated = rng.normal(size=(250, 2))  # the first cluster only: mode collapse
    precision, recall = precision_recall(real, generated)
    assert precision > 0.95  # 0.98: the few misses are the sample's outliers
    assert 0.45 < recall <= 0.5  # at most the first cluster's half; 0.484


def test_far_apart_sets_have_precision_and_recall_zero():
    rng = np.random.default_rng(2)
    real, generated = rng.normal(size=(60, 8)), 1000 + rng.normal(size=(50, 8))
    assert precision_recall(real, generated) == (0.0, 0.0)


@pytest.mark.parametrize("k", [1, 3])
def test_agrees_with_brute_force_for_any_number_of_rows(k):
    rng = np.random.default_rng(3)
    real, generated = rng.normal(size=(37, 5)), rng.normal(0.3, 1.2, size=(29, 5))
    expected = brute_force_precision_recall(real, generated, k)
    assert 0.2 < min(expected) and max(expected) < 0.95  # neither share is trivial
    for rows in (1, 4, 10, 29, 37, 100):  # 4 and 10 divide neither side; 100 is more than both
        assert precision_recall(real, generated, k=k, rows=rows) == expected


def test_the_number_of_rows_does_not_change_the_result():
    rng = np.random.default_rng(4)
    real, generated = rng.normal(size=(500, 16)), rng.normal(0.2, 1.1, size=(450, 16))
    results = {rows: precision_recall(real, generated, rows=rows) for rows in (1, 7, 64, 500)}
    assert len(set(results.values())) == 1, results
    # The radii too, up to float32 rounding of the matrix product in blocks of other shapes.
    np.testing.assert_allclose(radii(real.astype(np.float32), rows=7),
                               radii(real.astype(np.float32), rows=500), rtol=1e-5)


def test_needs_more_than_k_features_on_each_side():
    features = np.zeros((3, 4))
    with pytest.raises(ValueError, match="more than k = 3 features"):
        precision_recall(features, np.ones((10, 4)))
