"""What resuming costs: how long the input pipeline takes to reach its first batch when it starts
at image N of a prepared CelebA-like set, and how large a checkpoint of a tf.data iterator with
a shuffle buffer (the alternative) would be; prints numbers, asserts nothing.

    python -m benchmarks.resume                  # 20,000 images of 64x64, about a minute
    python -m benchmarks.resume --images 5000
"""
import io
import json
import os
import tempfile
import time

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import numpy as np
import tensorflow as tf
from absl import flags
from PIL import Image

import config
import data
from utils import cli

FLAGS = flags.FLAGS


def write_set(directory, images, shards=16):
    """TFRecords of random 64x64 PNGs (about CelebA's bytes per image) and their manifest."""
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 64)[None, :, None]
    entries = []
    for s in range(shards):
        name = f"celeba-{s:05d}-of-{shards:05d}.tfrecord"
        count = images // shards
        with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
            for _ in range(count):
                pixels = np.clip(smooth + rng.normal(0, 12, (64, 64, 3)), 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()]))
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature={"image": feature})).SerializeToString())
        entries.append({"file": name, "count": count})
    with open(os.path.join(directory, config.MANIFEST), "w") as f:
        json.dump({"size": 64, "shards": entries}, f)
    return sum(e["count"] for e in entries)


def first_batch_seconds(loaded, start):
    begin = time.perf_counter()
    next(iter(loaded.stream(start)))
    return time.perf_counter() - begin


def iterator_checkpoint_bytes(directory, count, batch_size):
    """The alternative: the same records through a shuffle buffer of data.SHUFFLE_WINDOW,
    resumed from a tf.data iterator checkpoint, which holds the buffer."""
    files = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith("record"))
    records = tf.data.TFRecordDataset(files).shuffle(min(count, data.SHUFFLE_WINDOW)).repeat()
    iterator = iter(records.batch(batch_size))
    next(iterator)
    with tempfile.TemporaryDirectory() as tmp:
        path = tf.train.Checkpoint(iterator=iterator).write(os.path.join(tmp, "ckpt"))
        return sum(os.path.getsize(os.path.join(tmp, n)) for n in os.listdir(tmp))


def run():
    with tempfile.TemporaryDirectory() as directory:
        count = write_set(directory, FLAGS.images)
        loaded = data.load(data.Request("celeba", image_size=64, data_dir=directory),
                           FLAGS.batch_size)
        set_bytes = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
        print(f"{count:,} images of 64x64 in 16 shards, {set_bytes / 1e6:.0f} MB; batch "
              f"{FLAGS.batch_size}")
        for start in (0, count // 2, count - FLAGS.batch_size, 5 * count + count // 2):
            seconds = [first_batch_seconds(loaded, start) for _ in range(3)]
            print(f"first batch from image {start:>9,} (epoch {start // count}): "
                  f"{min(seconds):6.2f} s (best of 3)")
        size = iterator_checkpoint_bytes(directory, count, FLAGS.batch_size)
        print(f"checkpoint of a tf.data iterator with a {min(count, data.SHUFFLE_WINDOW):,}-record "
              f"shuffle buffer: {size / 1e6:.1f} MB (this project's pipeline adds 0 bytes)")


def define_flags():
    flags.DEFINE_integer("images", 20_000, "images in the generated set")
    flags.DEFINE_integer("batch_size", 64, "images per batch")


if __name__ == "__main__":
    cli.main(run, define_flags)
