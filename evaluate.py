"""Score a trained generator with FID and KID: how far the features of its images lie from those
of the real images it learnt from. Lower is better; 0 means the same distribution of features.

    python evaluate.py --out_dir runs/celeba       # Inception features of 50,000 images
    python evaluate.py --out_dir runs/mnist --features mnist

FID (Heusel et al. 2017) fits a Gaussian to each side's features and measures the Fréchet
distance between the two. KID (Bińkowski et al. 2018) is the squared maximum mean discrepancy of
a polynomial kernel: unbiased, so it needs no Gaussian and fewer images. Both depend on the
feature network, on how images are resized for it and on the number of images, so all three
are printed and recorded. --features inception is Keras' ImageNet InceptionV3: the field's
network, but not the exact 2015 graph of the original FID code, so its numbers compare with each
other and only roughly with published ones.

The result goes to RUN/eval/step_STEP_FEATURES.json and to TensorBoard (eval/fid_FEATURES,
eval/kid_FEATURES at the checkpoint's step, in RUN/logs).
"""
import json
import os
import time

import cli  # first: it sets up TensorFlow's environment before TensorFlow loads

import keras
import numpy as np
import tensorflow as tf
from absl import flags

import classifier
import config
import data
from model import to_pixels
from solver import RUN_FLAGS, format_duration, load_generator, save_json

NUM_SAMPLES = 50_000  # the field's standard for FID, CelebA 64x64 included
KID_SUBSETS = 100  # Bińkowski et al.: mean and std of MMD^2 over 100 subsets of 1,000 images
KID_SUBSET_SIZE = 1000
KID_KEPT = 10_000  # features kept per side for KID; FID needs only running sums
PSD_TOLERANCE = 1e-6  # eigenvalues below -this x the largest are no rounding error
PROGRESS_EVERY = 10  # seconds between progress lines
INCEPTION_SIZE = 299
INCEPTION_WEIGHTS = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                 + INCEPTION_WEIGHTS)
INCEPTION_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"  # what Keras checks the file against

FLAGS = flags.FLAGS


# --- the distances ----------------------------------------------------------------------------
def psd_eigh(matrix, name):
    """Eigenvalues and eigenvectors of a covariance matrix, the eigenvalues of its null space
    set to zero.

    Where the matrix is singular (fewer images than features, or a feature that never varies),
    rounding leaves eigenvalues of about +-eps x the largest instead of zeros; their square
    roots would add up to a visible error, so everything below np.linalg.matrix_rank's
    tolerance is made zero. A clearly negative eigenvalue means the matrix is no covariance and
    the distance would be wrong: stop instead (pytorch-fid checks the imaginary part of scipy's
    sqrtm for the same reason).
    """
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    largest = np.abs(eigenvalues).max()
    if eigenvalues[0] < -PSD_TOLERANCE * largest:
        raise ValueError(f"{name} has the eigenvalue {eigenvalues[0]:.3g}: not a covariance matrix")
    null = eigenvalues < largest * len(matrix) * np.finfo(np.float64).eps
    return np.where(null, 0.0, eigenvalues), eigenvectors


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), in float64.

    tr(sqrt(S1 S2)) is computed as tr(sqrt(R S2 R)) with R = sqrt(S1): the same eigenvalues
    (R S2 R is similar to S1 S2), but R S2 R is symmetric and positive semi-definite, so they
    are real and come out stably even when S1 or S2 is singular.
    """
    mu1, sigma1, mu2, sigma2 = (np.asarray(a, np.float64) for a in (mu1, sigma1, mu2, sigma2))
    for name, value in [("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)]:
        if not np.isfinite(value).all():
            raise ValueError(f"{name} is not finite (inf or nan)")
    eigenvalues, eigenvectors = psd_eigh(sigma1, "sigma1")
    root1 = (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T
    eigenvalues, _ = psd_eigh(root1 @ sigma2 @ root1, "sqrt(sigma1) sigma2 sqrt(sigma1)")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eigenvalues).sum())


def polynomial_kernel(x, y):
    """k(x, y) = (x.y / d + 1)^3, KID's kernel."""
    k = x @ y.T / x.shape[1] + 1.0
    return k * k * k  # numpy's ** 3 goes through pow(), and took most of KID's time


def mmd2(x, y):
    """Unbiased MMD^2 between the samples x and y: the k(x_i, x_i) terms are left out of the
    within-sample means, whose expectation they would bias."""
    m, n = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    return ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
            + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
            - 2 * polynomial_kernel(x, y).mean())


def kid(real, generated, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """KID: mean and standard deviation of mmd2 over random subsets of each side (at most as
    large as the smaller side)."""
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    size = min(subset_size, len(real), len(generated))
    rng = np.random.default_rng(seed)
    values = [mmd2(real[rng.choice(len(real), size, replace=False)],
                   generated[rng.choice(len(generated), size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


class Statistics:
    """FID's mean and covariance from running float64 sums, so memory stays flat in the number
    of images; and the first KID_KEPT features for KID.

    The sums are taken around the first batch's mean: the covariance is then a difference of
    numbers of the size of the spread, not of the (larger) mean, and loses no precision.
    """

    def __init__(self, kept=KID_KEPT):
        self.count, self.shift, self.sum, self.outer = 0, None, 0.0, 0.0
        self.kept, self.room = [], kept

    def add(self, features):
        features = np.asarray(features, np.float64)
        if self.shift is None:
            self.shift = features.mean(axis=0)
        centred = features - self.shift
        self.count += len(features)
        self.sum = self.sum + centred.sum(axis=0)
        self.outer = self.outer + centred.T @ centred
        # The first ones are as random a draw as any: real images come shuffled, z at random.
        self.kept.append(features[:self.room])
        self.room -= len(self.kept[-1])

    def mu_sigma(self):
        mean = self.sum / self.count
        sigma = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return self.shift + mean, sigma

    def kept_features(self):
        return np.concatenate(self.kept)


# --- feature networks -------------------------------------------------------------------------
def keras_models_dir():
    """Where keras.utils.get_file looks for and saves model weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def inception(weights="imagenet"):
    """InceptionV3 to its 2048 average-pooled features, FID's and KID's usual features; at
    299x299, and its input in [-1, 1] (what its preprocess_input makes of pixels).
    weights=None: the same network untrained, to test the path without a download."""
    if weights == "imagenet":
        try:
            weights = keras.utils.get_file(INCEPTION_WEIGHTS, INCEPTION_URL, cache_subdir="models",
                                           file_hash=INCEPTION_MD5)
        except Exception as e:  # get_file raises a bare Exception when the fetch fails
            reason = str(e).split(" -- ")[-1]  # its message is "URL fetch failure on URL: -- why"
            raise config.ConfigError(
                f"cannot download the Inception weights ({reason}): without network, fetch "
                f"{INCEPTION_URL} elsewhere and put {INCEPTION_WEIGHTS} in {keras_models_dir()}/ "
                "(~/.keras/models/, or $KERAS_HOME/models/), or use --features mnist") from None
    return keras.applications.InceptionV3(include_top=False, weights=weights, pooling="avg",
                                          input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))


def mnist_features(path=classifier.DEFAULT_PATH):
    """classifier.py's digit classifier cut at its penultimate layer; trained first if missing."""
    if not os.path.isfile(path):
        print(f"No MNIST classifier at {path}: training it first (as python classifier.py does).")
        classifier.train_and_save(path)
    return classifier.feature_network(load_network(path))


def load_network(path):
    if not os.path.isfile(path):
        raise config.ConfigError(f"no Keras model at {path}: check --features")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises assorted types for a file it cannot read
        raise config.ConfigError(f"cannot load {path} ({type(e).__name__}): pass a model saved "
                                 "with model.save('NAME.keras')") from None


def feature_network(features):
    """(network, name): a Keras model from images in [-1, 1] to one feature vector each."""
    if features == "inception":
        return inception(), "inception"
    if features == "mnist":
        return mnist_features(), "mnist"
    if not features.endswith(".keras"):
        raise config.ConfigError(f"--features must be inception, mnist or a PATH.keras, "
                                 f"not {features!r}")
    network = load_network(features)
    if len(network.output_shape) != 2:
        raise config.ConfigError(f"{features} gives outputs of shape {network.output_shape}: "
                                 "a feature network gives one vector per image, [batch, d]")
    return network, os.path.basename(features)[:-len(".keras")]


def describe_input(network, image_size, channels):
    """How images are fitted to the network's input, in words for the record (FID changes with
    it); refuses what cannot be fitted."""
    _, height, width, wanted = network.input_shape
    if channels != wanted and (channels, wanted) != (1, 3):
        raise config.ConfigError(f"the feature network takes {wanted}-channel images and this "
                                 f"run's are {channels}-channel: choose other --features")
    steps = []
    if height and (height, width) != (image_size, image_size):
        steps.append(f"bilinear {image_size}x{image_size} -> {height}x{width}")
    if channels != wanted:
        steps.append("grayscale tiled to 3 channels")
    return ", ".join(steps) or f"none ({image_size}x{image_size})"


def network_input(pixels, network):
    """uint8 pixels -> the network's input: its size (bilinear), its channels, in [-1, 1]."""
    _, height, width, wanted = network.input_shape
    images = tf.cast(pixels, tf.float32)
    if images.shape[-1] != wanted:  # grayscale into an RGB network
        images = tf.tile(images, [1, 1, 1, wanted])
    if height and (height, width) != tuple(images.shape[1:3]):
        images = tf.image.resize(images, (height, width), method="bilinear")
    return images / 127.5 - 1.0


# --- images -----------------------------------------------------------------------------------
def real_source(out_dir, dataset, data_dir):
    """(dataset, data_dir, crop) of the real images: --dataset, else the run's flags.json."""
    if dataset:
        return dataset, data_dir, None
    path = os.path.join(out_dir, RUN_FLAGS)
    if not os.path.isfile(path):
        raise config.ConfigError(f"{path} not found (it came with later versions of train.py): "
                                 "pass --dataset (and --data_dir) of the images the run trained on")
    try:
        with open(path) as f:
            run_flags = json.load(f)
        return run_flags["dataset"], data_dir or run_flags.get("data_dir"), run_flags.get("crop")
    except (ValueError, KeyError, TypeError) as e:
        raise config.ConfigError(f"{path} is damaged ({e!r}): pass --dataset") from None


def real_pixels(batches, count, batch_size):
    """The first count images of the shuffled stream, as uint8, by the same path as generated
    ones. With count at most the dataset's size they are distinct images, but for the last
    batch when the batch size does not divide the dataset (it opens the next epoch)."""
    batches = iter(batches)
    for start in range(0, count, batch_size):
        yield to_pixels(next(batches)[:count - start])


def generated_pixels(generator, count, batch_size, seed):
    """The sampler's images of z ~ U(-1, 1), as uint8. The z come from one seeded stream, so
    the images do not depend on the batch size."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, batch_size):
        z = rng.uniform(-1.0, 1.0, (min(batch_size, count - start), generator.arch["z_dim"]))
        yield to_pixels(generator.sample(z.astype(np.float32)))


def feature_statistics(pixel_batches, network, count, what):
    """Statistics of the network's features of count images, with a progress line now and then."""
    statistics = Statistics()
    start = shown = time.perf_counter()
    for pixels in pixel_batches:
        features = network(network_input(pixels, network), training=False).numpy()
        if not np.isfinite(features).all():
            raise config.ConfigError("the feature network gave inf or nan: check --features")
        statistics.add(features)
        now = time.perf_counter()
        if now - shown >= PROGRESS_EVERY or statistics.count == count:
            rate = statistics.count / (now - start)
            print(f"{what}: {statistics.count:,}/{count:,} images, {rate:.0f} img/s, "
                  f"left {format_duration((count - statistics.count) / rate)}", flush=True)
            shown = now
    return statistics


# --- the command ------------------------------------------------------------------------------
def check_flags():
    if not FLAGS.out_dir:
        raise config.ConfigError("pass --out_dir: the run directory to evaluate")
    if FLAGS.num_samples < 2:
        raise config.ConfigError(f"--num_samples must be at least 2, not {FLAGS.num_samples}")
    if FLAGS.batch_size < 1:
        raise config.ConfigError(f"--batch_size must be a positive number, not {FLAGS.batch_size}")


def sample_count(requested, available):
    if requested <= available:
        return requested
    print(f"Using {available:,} real and {available:,} generated images, not {requested:,}: the "
          f"dataset has {available:,}.")
    return available


def write_scalars(out_dir, step, name, fid, kid_mean):
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "logs"))
    with writer.as_default():
        tf.summary.scalar(f"eval/fid_{name}", fid, step=step)
        tf.summary.scalar(f"eval/kid_{name}", kid_mean, step=step)
    writer.close()


def run():
    start = time.perf_counter()
    check_flags()
    out_dir = FLAGS.out_dir
    checkpoint = (FLAGS.checkpoint
                  or tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints")))
    generator, step = load_generator(out_dir, checkpoint)
    dataset, data_dir, crop = real_source(out_dir, FLAGS.dataset, FLAGS.data_dir)
    images = data.load(dataset, FLAGS.batch_size, generator.arch["image_size"], data_dir, crop,
                       FLAGS.seed)
    if images.channels != generator.arch["channels"]:
        raise config.ConfigError(f"{dataset} has {images.channels}-channel images and the run's "
                                 f"generator makes {generator.arch['channels']}-channel ones: pass "
                                 "the --dataset it trained on")
    count = sample_count(FLAGS.num_samples, images.count)
    network, name = feature_network(FLAGS.features)
    resize = describe_input(network, images.image_size, images.channels)

    real = feature_statistics(real_pixels(images.batches, count, FLAGS.batch_size), network,
                              count, f"real ({dataset})")
    generated = feature_statistics(generated_pixels(generator, count, FLAGS.batch_size, FLAGS.seed),
                                   network, count, f"generated (step {step})")
    fid = frechet_distance(*real.mu_sigma(), *generated.mu_sigma())
    kid_mean, kid_std = kid(real.kept_features(), generated.kept_features(), seed=FLAGS.seed)

    result = dict(fid=fid, kid_mean=kid_mean, kid_std=kid_std, num_real=real.count,
                  num_generated=generated.count, features=FLAGS.features, resize=resize,
                  checkpoint=checkpoint, step=step, dataset=dataset, seed=FLAGS.seed,
                  kid_subsets=KID_SUBSETS, kid_subset_size=min(KID_SUBSET_SIZE, count))
    path = os.path.join(out_dir, "eval", f"step_{step:07d}_{name}.json")
    save_json(result, path)
    write_scalars(out_dir, step, name, fid, kid_mean)
    print(f"FID {fid:.4f}  KID {kid_mean:.5f} ± {kid_std:.5f}  at step {step}: {name} features, "
          f"resize {resize}, {real.count:,} real and {generated.count:,} generated images")
    print(f"Wrote {path}, and eval/fid_{name}, eval/kid_{name} to {out_dir}/logs "
          f"({format_duration(time.perf_counter() - start)} in all).")


def define_flags():
    """Defined when run as a command, not on import: the tests import sample.py and
    evaluate.py into one process, and absl allows each flag name once."""
    flags.DEFINE_string("out_dir", None, "run directory to evaluate (as train.py's --out_dir)")
    flags.DEFINE_string("checkpoint", None, "checkpoint to evaluate (default: the run's latest)")
    flags.DEFINE_string("features", "inception", "feature network: inception (ImageNet InceptionV3, "
                        "downloaded once), mnist (classifier.py's digit classifier, trained on first "
                        "use), or a PATH.keras whose output is one feature vector per image")
    flags.DEFINE_integer("num_samples", NUM_SAMPLES, "real and generated images, each (at most the "
                         "dataset's size)")
    flags.DEFINE_integer("batch_size", 100, "images per batch through the networks")
    flags.DEFINE_string("dataset", None, "the real images (default: the run's, from its flags.json)")
    flags.DEFINE_string("data_dir", None, "where the real images live (default: the run's, else "
                        "the dataset's own)")
    flags.DEFINE_integer("seed", 0, "seed for z, the real images' order and KID's subsets")


if __name__ == "__main__":
    define_flags()
    cli.main(run)
