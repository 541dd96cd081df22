"""Measure the CelebA input path on generated CelebA-shaped JPEGs; prints numbers, asserts nothing.

    python -m benchmarks.input_pipeline                  # 2,000 images, about a minute on 2 cores
    python -m benchmarks.input_pipeline --images 500 --json

1. prepro.py's throughput with 1 worker and with one per core.
2. For each way of storing the 64x64 images: bytes per image, encode cost, error against the
   lossless pixels, and tf.data parse + decode + scale throughput (data.py's decode step; the
   records are cached in memory, so this is decoding, not the disk).
3. data.load("celeba") end to end: shards -> shuffled float batches of 64, no training.

The inputs are crops of the real photos that ship with matplotlib and scikit-learn (a portrait,
a temple, a flower), resized to 178x218 and saved at the JPEG quality that brings their mean
size nearest CelebA's (img_align_celeba.zip holds 202,599 JPEGs in 1,443,490,838 bytes: ~7.1 KB
each). Without those packages, smooth random fields with noise stand in.
"""
import json
import os
import statistics
import tempfile
import time

import numpy as np
from absl import flags
from PIL import Image

import config
import prepro
from utils import cli, files

# TensorFlow and data.py are imported inside the functions: prepro's worker processes start by
# importing the command's module, and should not pay for TensorFlow.

FLAGS = flags.FLAGS

CELEBA_IMAGES = 202_599
CELEBA_JPEG_BYTES = 1_443_490_838 / CELEBA_IMAGES  # a zip stores JPEGs about as they are
BATCH = 64
# (label, encoding, JPEG quality): png is prepro's default, jpeg q95 its lossy option, q75 what
# the original prepro.py wrote (PIL's default quality), raw the uint8 pixels as they are.
CANDIDATES = [("png", "png", None), ("jpeg q95", "jpeg", 95), ("jpeg q75", "jpeg", 75),
              ("raw", "raw", None)]


def source_photos():
    photos = []
    try:
        from matplotlib import cbook
        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
            photos.append(image.convert("RGB"))
    except Exception:  # optional: any failure means "not available"
        pass
    try:
        from sklearn.datasets import load_sample_images
        photos += [Image.fromarray(pixels) for pixels in load_sample_images().images]
    except Exception:
        pass
    return photos


def celeba_like(count, photos, rng):
    """count 178x218 RGB images: random crops of the photos, flipped and tinted at random."""
    images = []
    y, x = np.mgrid[0:218, 0:178] / 218.0
    for _ in range(count):
        if photos:
            photo = photos[rng.integers(len(photos))]
            height = int(min(photo.height, photo.width * 218 / 178) * rng.uniform(0.35, 1.0))
            width = height * 178 // 218
            left = rng.integers(photo.width - width + 1)
            top = rng.integers(photo.height - height + 1)
            image = photo.resize((178, 218), Image.Resampling.LANCZOS,
                                 box=(left, top, left + width, top + height))
            pixels = np.asarray(image, np.float32) * rng.uniform(0.8, 1.2, 3)
        else:
            waves = [np.sin(rng.uniform(1, 6) * (x * rng.normal() + y * rng.normal()))[..., None]
                     * rng.uniform(0, 255, 3) for _ in range(3)]
            pixels = sum(waves) / 3 + 128 + rng.normal(0, 6, (218, 178, 3))
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


def write_inputs(images, directory):
    """Saves the images at the quality whose mean size is nearest CelebA's; returns it."""
    def mean_size(quality):
        return statistics.mean(len(prepro.encode(np.asarray(i), "jpeg", quality))
                               for i in images[:100])

    quality = min(range(50, 100, 5), key=lambda q: abs(mean_size(q) - CELEBA_JPEG_BYTES))
    with files.writing(f"the benchmark's photos in {directory}"):
        os.makedirs(directory)
        for n, image in enumerate(images, 1):
            image.save(os.path.join(directory, f"{n:06d}.jpg"), quality=quality)
    return quality


def timed_build(source, out, workers):
    start = time.perf_counter()
    manifest = prepro.build(source, out, workers=workers, out=lambda *_: None)
    return manifest["count"] / (time.perf_counter() - start)


def rate(dataset, seconds):
    """Images per second of an endless dataset of batches, after a warm-up."""
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += int(next(iterator).shape[0])
    return images / (time.perf_counter() - start)


def parse(record):
    import tensorflow as tf
    features = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
    return features["image"]


def decode_pipeline(path, encoding, parallel):
    """data.py's read step for one encoding: parse, decode, scale to [-1, 1], batch."""
    import tensorflow as tf

    def decode(record):
        if encoding == "raw":
            image = tf.reshape(tf.io.decode_raw(parse(record), tf.uint8), (64, 64, 3))
        else:
            image = tf.io.decode_image(parse(record), channels=3, expand_animations=False)
        return tf.cast(image, tf.float32) / 127.5 - 1.0

    calls = tf.data.AUTOTUNE if parallel else None
    return (tf.data.TFRecordDataset(path).cache().repeat().map(decode, num_parallel_calls=calls)
            .batch(BATCH).prefetch(tf.data.AUTOTUNE))


def storage(pixels, path, *, encoding, quality, seconds):
    """Size, encode cost, error and decode throughput of one encoding of the pixels."""
    import tensorflow as tf
    start = time.perf_counter()
    encoded = [prepro.encode(p, encoding, quality) for p in pixels]
    encode_us = (time.perf_counter() - start) / len(pixels) * 1e6
    with tf.io.TFRecordWriter(path) as writer:
        for image in encoded:
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
            writer.write(tf.train.Example(features=tf.train.Features(
                feature={"image": feature})).SerializeToString())
    decoded = [np.frombuffer(e, np.uint8).reshape(64, 64, 3) if encoding == "raw"
               else tf.io.decode_image(e).numpy() for e in encoded[:200]]
    error = np.abs(np.array(decoded, np.float64) - np.array(pixels[:200]))
    mse = np.mean(error ** 2)
    per_image = statistics.mean(map(len, encoded))
    return {"bytes_per_image": round(per_image),
            "celeba_gb": per_image * CELEBA_IMAGES / 1e9,
            "encode_us": encode_us,
            "mean_abs_error": float(error.mean()),
            "psnr_db": None if mse == 0 else float(10 * np.log10(255 ** 2 / mse)),  # None: exact
            "decode_img_s_1_thread": rate(decode_pipeline(path, encoding, False), seconds),
            "decode_img_s_parallel": rate(decode_pipeline(path, encoding, True), seconds)}


def measure(count, seconds):
    import tensorflow as tf
    cores = prepro.cores()
    results = {"images": count, "cores": cores}
    photos = source_photos()
    results["inputs"] = ("crops of matplotlib's and scikit-learn's sample photos" if photos
                         else "random smooth fields with noise")
    with tempfile.TemporaryDirectory() as tmp:
        source, out = os.path.join(tmp, "img_align_celeba"), os.path.join(tmp, "celeba")
        images = celeba_like(count, photos, np.random.default_rng(0))
        results["input_jpeg_quality"] = write_inputs(images, source)
        results["input_bytes_per_image"] = round(statistics.mean(
            os.path.getsize(os.path.join(source, n)) for n in os.listdir(source)))

        # 1. prepro.py, the start-up of its worker processes included.
        results["prepro_img_s"] = {"1 worker": timed_build(source, os.path.join(tmp, "one"), 1),
                                   f"{cores} workers": timed_build(source, out, cores)}
        names = sorted(os.listdir(source))[:500]
        start = time.perf_counter()  # the same work in this process, nothing written
        for name in names:
            prepro.encode(prepro.prepare(os.path.join(source, name), 108, 64), "png")
        results["prepare_png_us_per_image"] = (time.perf_counter() - start) / len(names) * 1e6

        # 2. Storage candidates, from the lossless pixels prepro.py wrote.
        with open(os.path.join(out, config.MANIFEST)) as f:
            shards = [os.path.join(out, s["file"]) for s in json.load(f)["shards"]]
        pixels = [image.numpy() for image in
                  tf.data.TFRecordDataset(shards).map(lambda r: tf.io.decode_png(parse(r)))]
        results["encodings"] = {
            label: storage(pixels, os.path.join(tmp, label + ".tfrecord"), encoding=encoding,
                           quality=quality, seconds=seconds)
            for label, encoding, quality in CANDIDATES}

        # 3. data.load end to end on prepro.py's output.
        results["data_load_img_s"] = pipeline_rate(out, BATCH, seconds)
    return results


def pipeline_rate(data_dir, batch_size, seconds):
    """data.load("celeba") of prepro.py's output in data_dir, end to end: shards -> shuffled
    float batches, no training."""
    import data
    images = data.load(data.Request("celeba", image_size=64, data_dir=data_dir), batch_size)
    return rate(images.stream(), seconds)


def generated_pipeline_rate(images, batch_size, seconds):
    """pipeline_rate() on prepro.py's output of `images` generated CelebA-shaped photos."""
    with tempfile.TemporaryDirectory() as tmp:
        source, out = os.path.join(tmp, "img_align_celeba"), os.path.join(tmp, "celeba")
        write_inputs(celeba_like(images, source_photos(), np.random.default_rng(0)), source)
        prepro.build(source, out, out=lambda *_: None)
        return pipeline_rate(out, batch_size, seconds)


def report(r):
    print(f"{r['images']:,} CelebA-shaped 178x218 JPEGs ({r['inputs']}) at quality "
          f"{r['input_jpeg_quality']}: {r['input_bytes_per_image']:,} bytes each on average "
          f"(CelebA: {CELEBA_JPEG_BYTES:,.0f}); {r['cores']} cores.\n")
    print("1. prepro.py: crop, Lanczos resize, PNG, TFRecords (worker start-up included)")
    for workers, value in r["prepro_img_s"].items():
        print(f"   {workers:<10} {value:8,.0f} img/s   "
              f"all of CelebA in ~{CELEBA_IMAGES / value / 60:,.0f} min")
    print(f"   {r['prepare_png_us_per_image']:,.0f} us per image in one process\n")
    print(f"2. storage of 64x64 images; img/s = tf.data parse + decode + scale, batch {BATCH}")
    print(f"   {'encoding':<10} {'bytes/img':>9} {'CelebA GB':>9} {'encode us':>9} "
          f"{'mean |err|':>10} {'PSNR dB':>8} {'img/s 1 thread':>15} {'img/s parallel':>15}")
    for label, e in r["encodings"].items():
        psnr = "exact" if e["psnr_db"] is None else f"{e['psnr_db']:.1f}"
        print(f"   {label:<10} {e['bytes_per_image']:>9,} {e['celeba_gb']:>9.2f} "
              f"{e['encode_us']:>9,.0f} {e['mean_abs_error']:>10.2f} {psnr:>8} "
              f"{e['decode_img_s_1_thread']:>15,.0f} {e['decode_img_s_parallel']:>15,.0f}")
    print(f"\n3. data.load('celeba', batch_size={BATCH}) from the png shards: "
          f"{r['data_load_img_s']:,.0f} img/s")


def run():
    from utils import tf_setup  # noqa: F401 (before the functions above import TensorFlow)
    results = measure(FLAGS.images, FLAGS.seconds)
    report(results)
    if FLAGS.json:
        print(json.dumps(results))


def define_flags():
    flags.DEFINE_integer("images", 2000, "CelebA-shaped JPEGs to generate")
    flags.DEFINE_float("seconds", 2.0, "how long each throughput is measured")
    flags.DEFINE_bool("json", False, "also print every number as one JSON object, on the last line")


if __name__ == "__main__":
    cli.main(run, define_flags)
