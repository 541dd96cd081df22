"""metrics/ and evaluate.py: FID and KID against independent computations, the streamed
statistics, the feature networks (Inception without its download), the MNIST classifier, and
the command end to end on a tiny run."""
import json
import os

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

import config
import data
import evaluate
from conftest import error_line, events, load, run_command, tiny_models
from metrics import classifier, distances, evaluation, features
from training.run_dir import RunDir


def random_covariance(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d


# --- Fréchet distance -------------------------------------------------------------------------
def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=16), random_covariance(rng, 16)
    assert abs(distances.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_frechet_distance_of_diagonal_covariances_has_its_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    np.testing.assert_allclose(distances.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)),
                               expected, rtol=1e-12)


def test_frechet_distance_agrees_with_scipy_sqrtm():
    rng = np.random.default_rng(2)
    for d in (2, 16, 64):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        sigma1, sigma2 = random_covariance(rng, d), random_covariance(rng, d)
        # pytorch-fid's computation: scipy's (non-symmetric) square root of S1 S2.
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
        expected = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
                    - 2 * np.trace(covmean))
        np.testing.assert_allclose(distances.frechet_distance(mu1, sigma1, mu2, sigma2), expected,
                                   rtol=1e-9)


def test_frechet_distance_of_singular_covariances():
    """Fewer images than features, as early in a stream: the covariances are singular."""
    rng = np.random.default_rng(3)
    sigma1 = np.cov(rng.normal(size=(10, 32)), rowvar=False)  # rank 9
    sigma2 = np.cov(rng.normal(1.0, 2.0, size=(12, 32)), rowvar=False)  # rank 11
    mu = np.zeros(32)
    assert abs(distances.frechet_distance(mu, sigma1, mu, sigma1)) < 1e-9 * np.trace(sigma1)
    # Independently: tr sqrt(S1 S2) is the sum of the square roots of S1 S2's eigenvalues, which
    # are real and >= 0 (it is similar to a positive semi-definite matrix).
    eigenvalues = np.clip(np.linalg.eigvals(sigma1 @ sigma2).real, 0, None)
    expected = np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eigenvalues).sum()
    np.testing.assert_allclose(distances.frechet_distance(mu, sigma1, mu, sigma2), expected,
                               rtol=1e-7)
    # Zero variances, where the closed form of diagonal covariances still holds.
    a, b = np.array([0.0, 1.0, 4.0, 0.0]), np.array([0.0, 0.0, 1.0, 9.0])
    np.testing.assert_allclose(distances.frechet_distance(np.zeros(4), np.diag(a), np.zeros(4),
                                                         np.diag(b)), 0 + 1 + 1 + 9)


def test_frechet_distance_refuses_non_finite_and_non_covariance_input():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="mu2 is not finite"):
        distances.frechet_distance(mu, sigma, np.array([0.0, np.nan, 0.0]), sigma)
    with pytest.raises(ValueError, match="sigma1 is not finite"):
        distances.frechet_distance(mu, np.full((3, 3), np.inf), mu, sigma)
    with pytest.raises(ValueError, match="not a covariance matrix"):
        distances.frechet_distance(mu, np.diag([1.0, -1.0, 1.0]), mu, sigma)


# --- KID --------------------------------------------------------------------------------------
def brute_force_mmd2(x, y):
    def k(a, b):
        return (sum(a_i * b_i for a_i, b_i in zip(a, b)) / len(a) + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_and_kid_match_a_double_loop():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.3, 1.2, size=(9, 5))
    np.testing.assert_allclose(distances.mmd2(x, y), brute_force_mmd2(x, y), rtol=1e-12)
    # Subsets as large as the smaller side, all of it: every subset gives the same value.
    z = rng.normal(0.3, 1.2, size=(7, 5))
    mean, std = distances.kid(x, z, subsets=5)
    np.testing.assert_allclose(mean, brute_force_mmd2(x, z), rtol=1e-12)
    assert std < 1e-12


def test_kid_of_constant_features_has_its_closed_form():
    u, v = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, -0.5])

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    mean, std = distances.kid(np.tile(u, (30, 1)), np.tile(v, (40, 1)), subsets=10, subset_size=20)
    np.testing.assert_allclose(mean, k(u, u) + k(v, v) - 2 * k(u, v), rtol=1e-12)
    assert std < 1e-12


def test_kid_is_near_zero_for_two_samples_of_one_distribution():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    shifted = rng.normal(0.5, 1.0, size=(1000, 16))
    same, same_std = distances.kid(x, y, subsets=20, subset_size=200)
    different, _ = distances.kid(x, shifted, subsets=20, subset_size=200)
    assert abs(same) < 0.02 * different and abs(same) < 3 * same_std


# --- streamed statistics ----------------------------------------------------------------------
@pytest.mark.parametrize("batch_sizes", [[103], [1] * 103, [50, 3, 40, 10]])
def test_running_statistics_equal_those_of_all_features_at_once(batch_sizes):
    rng = np.random.default_rng(6)
    values = 1000.0 + rng.normal(size=(103, 6)) @ rng.normal(size=(6, 6))  # a large mean
    statistics = distances.Statistics(kept=20)
    for batch in np.split(values, np.cumsum(batch_sizes)[:-1]):
        statistics.add(batch)
    mu, sigma = statistics.mu_sigma()
    np.testing.assert_allclose(mu, values.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(sigma, np.cov(values, rowvar=False), rtol=1e-9, atol=1e-12)
    assert statistics.count == 103
    np.testing.assert_array_equal(statistics.kept_features(), values[:20].astype(np.float32))
    np.testing.assert_array_equal(statistics.kept_features(), values[:20].astype(np.float32))


def test_kept_features_are_the_networks_float32_values_unchanged():
    """So KID, which reads them in float64, gives what it gave when they were kept in float64."""
    values = np.random.default_rng(7).normal(size=(30, 4)).astype(np.float32)
    statistics = distances.Statistics()
    statistics.add(values[:10])
    statistics.add(values[10:])
    kept = statistics.kept_features()
    assert kept.dtype == np.float32 and len(kept) == 30
    np.testing.assert_array_equal(kept, values)
    assert distances.KEPT >= distances.KID_KEPT


# --- feature networks -------------------------------------------------------------------------
def tiny_feature_network(input_shape=(16, 16, 3)):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(input_shape),
                             keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8)])


def test_images_are_resized_and_tiled_to_the_network_input():
    network = tiny_feature_network()
    pixels = np.random.default_rng(7).integers(0, 256, (2, 28, 28, 1), np.uint8)
    images = features.network_input(pixels, network).numpy()
    assert images.shape == (2, 16, 16, 3) and images.min() >= -1 and images.max() <= 1
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    assert (features.describe_input(network, 28, 1)
            == "bilinear 28x28 -> 16x16, grayscale tiled to 3 channels")
    assert features.describe_input(network, 16, 3) == "none (16x16)"
    with pytest.raises(config.ConfigError, match="takes 1-channel images"):
        features.describe_input(tiny_feature_network((16, 16, 1)), 16, 3)
    with pytest.raises(config.ConfigError, match="features: must be inception, mnist or a"):
        features.feature_network("vgg16")


def test_inception_gives_2048_features_of_small_grayscale_images():
    network = features.inception(weights=None)  # the architecture alone: no download
    pixels = np.random.default_rng(8).integers(0, 256, (2, 28, 28, 1), np.uint8)
    found = network(features.network_input(pixels, network), training=False)
    assert found.shape == (2, 2048) and np.isfinite(found).all()
    assert features.describe_input(network, 28, 1) == ("bilinear 28x28 -> 299x299, "
                                                       "grayscale tiled to 3 channels")


def test_inception_without_network_says_where_to_put_the_weights(tmp_path, monkeypatch):
    def offline(*args, **kwargs):  # what get_file raises offline
        raise Exception("URL fetch failure on URL: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)  # never touches the network
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(config.ConfigError) as error:
        features.inception()
    message = str(error.value)
    assert "\n" not in message and "Name or service not known" in message
    assert features.INCEPTION_WEIGHTS in message and str(tmp_path / "models") in message
    assert features.INCEPTION_URL in message and "the mnist features" in message
    assert error.value.setting == "features"  # each command names its own flag for it


# --- the MNIST classifier ---------------------------------------------------------------------
def test_shipped_classifier_is_the_pinned_one_and_scores_its_recorded_accuracy():
    assert classifier.file_sha256(classifier.DEFAULT_PATH) == classifier.WEIGHTS_SHA256
    recorded = json.loads(open(classifier.record_path(classifier.DEFAULT_PATH)).read())
    model = classifier.load()
    _, (images, labels) = classifier.digits()
    logits = model.predict(images, batch_size=500, verbose=0)
    assert len(labels) == recorded["held_out_images"] == 1000
    assert abs(np.mean(np.argmax(logits, axis=1) == labels) - recorded["held_out_accuracy"]) < 1e-6
    assert recorded["held_out_accuracy"] > 0.95  # chance is 0.1

    network = features.mnist_features()
    digit_features = network(images[:5]).numpy()
    assert digit_features.shape == (5, 128)
    # the cut is at the penultimate layer: the logits layer makes the logits of its features
    np.testing.assert_allclose(model.get_layer("logits")(digit_features), logits[:5], atol=1e-5)


def test_classifier_weights_other_than_the_pinned_ones_are_refused(tmp_path):
    copy = tmp_path / "mnist_classifier.weights.h5"
    weights = bytearray(open(classifier.DEFAULT_PATH, "rb").read())
    weights[len(weights) // 2] ^= 0xFF  # inside a weight: Keras would load it without a word
    copy.write_bytes(weights)
    with pytest.raises(config.ConfigError) as refused:
        features.mnist_features(str(copy))
    message = str(refused.value)
    assert f"{copy} is not the MNIST classifier's pinned weights" in message
    assert classifier.WEIGHTS_SHA256 in message and classifier.file_sha256(copy) in message
    assert "restore it with git checkout" in message and "python -m metrics.classifier" in message
    assert "\n" not in message

    copy.unlink()
    with pytest.raises(config.ConfigError) as refused:
        features.mnist_features(str(copy))
    message = str(refused.value)
    assert f"weights file {copy} is missing: restore it with git checkout" in message
    assert "\n" not in message


def test_classifier_command_makes_the_same_weights_twice_and_names_their_hash(tmp_path, capsys):
    paths = [str(tmp_path / f"{name}.weights.h5") for name in ("first", "second")]
    accuracy, sha256 = classifier.train_and_save(paths[0], epochs=1)  # 0.91 after one epoch
    assert accuracy > 0.8  # chance is 0.1
    assert sha256 == classifier.file_sha256(paths[0]) != classifier.WEIGHTS_SHA256
    printed = capsys.readouterr().out
    assert f"SHA-256 {sha256}" in printed and "Not the pinned weights" in printed
    saved = json.loads((tmp_path / "first.json").read_text())
    assert saved["held_out_accuracy"] == accuracy and saved["held_out_images"] == 1000
    assert sorted(os.listdir(tmp_path)) == ["first.json", "first.weights.h5"]  # no temp left
    assert os.path.getsize(paths[0]) < 1_000_000  # the weights alone, not Adam's moments too
    # bit for bit, though this process has built more layers since (Keras numbers their names)
    assert classifier.train_and_save(paths[1], epochs=1) == (accuracy, sha256)

    with pytest.raises(config.ConfigError, match="not the MNIST classifier's pinned weights"):
        features.mnist_features(paths[0])
    network = features.mnist_features(paths[0], sha256)
    pixels = np.random.default_rng(9).integers(0, 256, (3, 28, 28, 1), np.uint8)
    assert network(features.network_input(pixels, network)).shape == (3, 128)
    with pytest.raises(config.ConfigError, match="must end in .weights.h5"):
        classifier.train_and_save(str(tmp_path / "classifier.keras"))  # before any training


# --- the real statistics' cache ------------------------------------------------------------
def test_real_statistics_are_computed_once_read_back_to_the_bit_and_never_trusted_stale(
        tmp_path, capsys):
    network = tmp_path / "tiny.keras"
    tiny_feature_network().save(network)
    cache = tmp_path / "cache"

    def prepare(seed=0):
        images = load("fake", 10, image_size=16, seed=seed)
        return evaluation.prepare(images, str(network), count=30, seed=0, batch_size=10,
                                  cache_dir=str(cache)).real.state()

    def assert_same(a, b):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    first = prepare()
    assert "from the cache" not in capsys.readouterr().out
    (path,) = cache.iterdir()
    assert_same(prepare(), first)
    assert "Real statistics from the cache" in capsys.readouterr().out
    other = prepare(seed=1)  # other images: another file, other statistics
    assert len(list(cache.iterdir())) == 2 and not np.array_equal(other["sum"], first["sum"])

    (other_path,) = set(cache.iterdir()) - {path}
    for damage in (lambda: path.write_bytes(path.read_bytes()[:200]),  # cut short
                   lambda: path.write_bytes(other_path.read_bytes())):  # another key's record
        damage()
        assert_same(prepare(), first)
        assert "cannot be used" in capsys.readouterr().out
        assert_same(prepare(), first)  # written again, whole: read back
        assert "Real statistics from the cache" in capsys.readouterr().out


# --- images -----------------------------------------------------------------------------------
def test_generated_images_do_not_depend_on_the_batch_size():
    generator, _ = tiny_models()
    images = [np.concatenate(list(features.generated_pixels(generator, 7, batch_size, seed=3)))
              for batch_size in (7, 3, 1)]
    assert images[0].shape == (7, 16, 16, 3) and images[0].dtype == np.uint8
    np.testing.assert_array_equal(images[0], images[1])
    np.testing.assert_array_equal(images[0], images[2])


def test_real_images_come_from_the_run_unless_dataset_is_given(tmp_path):
    (tmp_path / "flags.json").write_text(json.dumps({"dataset": "folder", "data_dir": "pics",
                                                      "crop": 108, "seed": 4}))
    run = RunDir(str(tmp_path))
    assert evaluate.real_images(run, None, None) == data.Request("folder", data_dir="pics",
                                                                 crop=108, seed=4)
    assert evaluate.real_images(run, None, "other").data_dir == "other"
    assert evaluate.real_images(run, "mnist", None) == data.Request("mnist")
    (tmp_path / "flags.json").write_text("[1, 2")  # cut short
    with pytest.raises(config.ConfigError, match="flags.json is damaged"):
        evaluate.real_images(run, None, None)
    (tmp_path / "flags.json").write_text(json.dumps({"data_dir": "pics"}))
    with pytest.raises(config.ConfigError, match="flags.json is damaged"):
        evaluate.real_images(run, None, None)
    (tmp_path / "flags.json").unlink()  # a run made before train.py wrote it
    with pytest.raises(config.ConfigError, match="not found: name the dataset") as error:
        evaluate.real_images(run, None, None)
    assert error.value.setting == "dataset"


def test_sample_count_is_capped_at_the_dataset_and_says_so(capsys):
    assert evaluate.sample_count(40, 5000) == 40 and capsys.readouterr().out == ""
    assert evaluate.sample_count(50_000, 5000) == 5000
    assert "Using 5,000 real and 5,000 generated images, not 50,000" in capsys.readouterr().out


# --- the command ------------------------------------------------------------------------------
@pytest.fixture
def tiny_run(tmp_path):
    """A run of train.py: 2 steps of small networks on MNIST, with its flags.json."""
    out = tmp_path / "run"
    result = run_command("train.py", "--dataset=mnist", "--max_steps=2", "--gf_dim=8",
                         "--df_dim=8", "--batch_size=16", "--eval_every=0", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_command_writes_json_and_tensorboard_and_repeats_exactly(tiny_run, tmp_path):
    network = tmp_path / "tiny.keras"
    tiny_feature_network().save(network)
    args = [f"--out_dir={tiny_run}", f"--features={network}", "--num_samples=40",
            "--batch_size=16", f"--cache_dir={tmp_path}/cache"]
    first = run_command("evaluate.py", *args)
    assert first.returncode == 0, first.stderr
    assert "tiny features, resize bilinear 28x28 -> 16x16" in first.stdout
    assert "40 real and 40 generated images" in first.stdout
    path = tiny_run / "eval" / "step_0000002_tiny.json"
    result = json.loads(path.read_text())
    assert np.isfinite(result["fid"]) and result["fid"] >= 0 and np.isfinite(result["kid_mean"])
    assert (result["num_real"], result["num_generated"], result["step"]) == (40, 40, 2)
    assert 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
    assert (result["pr_k"], result["pr_num_real"], result["pr_num_generated"]) == (3, 40, 40)
    assert f"precision {result['precision']:.4f}  recall {result['recall']:.4f}" in first.stdout
    assert result["dataset"] == "mnist" and result["checkpoint"].endswith("ckpt-2")

    tags = events(tiny_run / "logs")
    for metric, key in [("fid", "fid"), ("kid", "kid_mean"), ("precision", "precision"),
                        ("recall", "recall")]:
        logged = tf.make_ndarray(tags[f"eval/{metric}_tiny"][2].tensor)
        np.testing.assert_allclose(logged, result[key], rtol=1e-6)  # TensorBoard keeps float32

    again = run_command("evaluate.py", *args)
    assert again.returncode == 0, again.stderr
    assert json.loads(path.read_text()) == result


@pytest.mark.slow
def test_a_module_command_names_itself_as_it_is_run():
    line = error_line(run_command("-m metrics.classifier", "--epochs_typo=1"),
                      "metrics.classifier")
    assert "see python -m metrics.classifier --helpshort" in line


@pytest.mark.slow
def test_a_missing_run_is_one_line_and_nonzero(tmp_path):
    line = error_line(run_command("evaluate.py", f"--out_dir={tmp_path}/run", "--features=mnist"),
                      "evaluate.py")
    assert f"no checkpoint in {tmp_path}/run/checkpoints" in line


def test_statistics_by_class_are_those_of_each_class_alone():
    network = tiny_feature_network()
    rng = np.random.default_rng(3)
    batches = [(rng.integers(0, 256, (n, 16, 16, 3), np.uint8), rng.integers(0, 3, n))
               for n in (7, 5, 9)]
    overall, by_class = features.feature_statistics(iter(batches), network, 21, "x", by_class=True)
    every = np.concatenate([network(features.network_input(p, network)).numpy()
                            for p, _ in batches])
    classes = np.concatenate([c for _, c in batches])
    assert overall.count == 21 and sorted(by_class) == [0, 1, 2]
    for c, statistics in by_class.items():
        mu, sigma = statistics.mu_sigma()
        np.testing.assert_allclose(mu, every[classes == c].mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sigma, np.cov(every[classes == c], rowvar=False), rtol=1e-4,
                                   atol=1e-6)
