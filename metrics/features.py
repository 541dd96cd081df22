"""The feature networks that FID and KID compare images through, and the images they take.

inception is Keras' ImageNet InceptionV3: the field's network, but not the exact 2015 graph of
the original FID code, so its numbers compare with each other and only roughly with published
ones. mnist is the digit classifier of metrics/classifier.py, with the weights the project ships,
cut at its penultimate layer. Any Keras model saved as NAME.keras that gives one vector per image
works too.
"""
import os
import time

import keras
import numpy as np
import tensorflow as tf

import config
from metrics import classifier
from metrics.distances import Statistics
from model import draw_z, sample_pixels, to_pixels
from utils.cli import format_duration

PROGRESS_EVERY = 10  # seconds between progress lines
INCEPTION_SIZE = 299
INCEPTION_WEIGHTS = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                 + INCEPTION_WEIGHTS)
INCEPTION_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"  # what Keras checks the file against


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
                "(~/.keras/models/, or $KERAS_HOME/models/), or choose the mnist features",
                "features") from None
    return keras.applications.InceptionV3(include_top=False, weights=weights, pooling="avg",
                                          input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))


def mnist_features(path=classifier.DEFAULT_PATH, sha256=classifier.WEIGHTS_SHA256):
    """The digit classifier of the weights shipped with the project, cut at its penultimate
    layer; weights of another hash are refused (see classifier.load)."""
    return classifier.cut_at_features(classifier.load(path, sha256))


def load_network(path):
    if not os.path.isfile(path):
        raise config.ConfigError(f"no Keras model at {path}", "features")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises assorted types for a file it cannot read
        raise config.ConfigError(f"cannot load {path} ({type(e).__name__}): pass a model saved "
                                 "with model.save('NAME.keras')", "features") from None


def feature_network(features):
    """(network, name): a Keras model from images in [-1, 1] to one feature vector each."""
    if features == "inception":
        return inception(), "inception"
    if features == "mnist":
        return mnist_features(), "mnist"
    if not features.endswith(".keras"):
        raise config.ConfigError(f"must be inception, mnist or a PATH.keras, not {features!r}",
                                 "features")
    network = load_network(features)
    if len(network.output_shape) != 2:
        raise config.ConfigError(f"{features} gives outputs of shape {network.output_shape}: "
                                 "a feature network gives one vector per image, [batch, d]",
                                 "features")
    return network, os.path.basename(features)[:-len(".keras")]


def fingerprint(features):
    """A text that changes when the feature network so named does: its weights' hash."""
    if features == "inception":
        return f"inception md5 {INCEPTION_MD5}"
    if features == "mnist":
        return f"mnist sha256 {classifier.WEIGHTS_SHA256}"
    return f"{os.path.abspath(features)} sha256 {classifier.file_sha256(features)}"


def describe_input(network, image_size, channels):
    """How images are fitted to the network's input, in words for the record (FID changes with
    it); refuses what cannot be fitted."""
    _, height, width, wanted = network.input_shape
    if channels != wanted and (channels, wanted) != (1, 3):
        raise config.ConfigError(f"the feature network takes {wanted}-channel images and this "
                                 f"run's are {channels}-channel: choose another", "features")
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


def vectors(pixels, network, batch_size=100):
    """The network's feature vector of each of the uint8 images, batch by batch."""
    return np.concatenate([network(network_input(pixels[s:s + batch_size], network),
                                   training=False).numpy()
                           for s in range(0, len(pixels), batch_size)])


# --- the images ------------------------------------------------------------------------------
def real_pixels(batches, count, batch_size):
    """The first count images of the shuffled stream, as uint8, by the same path as generated
    ones. With count at most the dataset's size they are distinct images, but for the last
    batch when the batch size does not divide the dataset (it opens the next epoch). A stream
    of (images, labels) gives (pixels, labels)."""
    batches = iter(batches)
    for start in range(0, count, batch_size):
        batch = next(batches)
        if isinstance(batch, tuple):
            yield to_pixels(batch[0][:count - start]), batch[1][:count - start].numpy()
        else:
            yield to_pixels(batch[:count - start])


def generated_pixels(generator, count, batch_size, seed, y=None):
    """The sampler's images of count z ~ U(-1, 1) (and of y, a conditional run's label
    vectors), as uint8. The z come from one seeded stream, so the images do not depend on the
    batch size."""
    return sample_pixels(generator, draw_z(count, generator.arch.z_dim, seed), batch_size, y)


def feature_statistics(pixel_batches, network, count, what, by_class=False):
    """Statistics of the network's features of count images, with a progress line now and then.
    by_class: the batches are (pixels, their classes), and {class: Statistics} comes too."""
    statistics, per_class = Statistics(), {}
    start = shown = time.perf_counter()
    for pixels in pixel_batches:
        if by_class:
            pixels, classes = pixels
        features = network(network_input(pixels, network), training=False).numpy()
        if not np.isfinite(features).all():
            raise config.ConfigError("the feature network gave inf or nan", "features")
        for c in np.unique(classes) if by_class else []:
            per_class.setdefault(int(c), Statistics(kept=0)).add(features[classes == c])
        statistics.add(features)
        now = time.perf_counter()
        if now - shown >= PROGRESS_EVERY or statistics.count == count:
            rate = statistics.count / (now - start)
            print(f"{what}: {statistics.count:,}/{count:,} images, {rate:.0f} img/s, "
                  f"left {format_duration((count - statistics.count) / rate)}", flush=True)
            shown = now
    return (statistics, per_class) if by_class else statistics
