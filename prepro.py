"""Centre-crop and resize CelebA into the sharded TFRecords that data.py reads.

    ./download.sh && python prepro.py         # data/img_align_celeba -> data/celeba
    python prepro.py --partition train --output_dir data/celeba_train

Each image is processed as the original prepro.py did: the centre 108x108 square of the 178x218
photo, resized to 64x64 with Lanczos. Unlike the original, the result is stored losslessly (PNG)
in --shards TFRecord files, written by --workers processes. Running the same command again
resumes: complete shards are kept, the rest are written. The same input gives the same bytes.
When CelebA's list_attr_celeba.txt lies beside the images (in --input_dir or one level up), each
image's 40 attributes are stored with it, as 0/1 (the file's -1/1), for conditional training.

The output directory holds:
  celeba-00000-of-00016.tfrecord ...  tf.train.Example {"image": PNG bytes, "filename": source name}
                  and, with the attribute file, "attributes": 40 int64 0/1, in the file's order
  manifest.json   what data.py reads, naming the attributes; written last, so its presence means
                  the set is complete
  skipped.txt     each input that was not used, with the reason (tab-separated)
  progress.json   which shards are complete and from which input; what a rerun consults
"""
import collections
import fcntl
import functools
import hashlib
import io
import json
import multiprocessing
import os
import re
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from absl import flags
from PIL import Image, ImageOps, UnidentifiedImageError

import config
from utils import cli, files

ENCODINGS = ("png", "jpeg")  # what data.py decodes; benchmarks/input_pipeline.py also measures "raw"
PARTITIONS = {"train": "0", "valid": "1", "test": "2"}  # CelebA's ids in list_eval_partition.txt
PARTITION_FILE = "list_eval_partition.txt"
PROGRESS = "progress.json"
SKIPPED = "skipped.txt"
SHARD = "celeba-{:05d}-of-{:05d}.tfrecord"
OURS = re.compile("|".join(  # what a run may delete in the output folder: its own files only
    [rf"celeba-\d{{5}}-of-\d{{5}}\.tfrecord({re.escape(files.TMP)})?"]
    + [re.escape(name + files.TMP) for name in (config.MANIFEST, PROGRESS, SKIPPED)]))
FORMAT = 1  # bump when the bytes written for the same input change; a rerun then rewrites all
PROGRESS_EVERY = 5  # seconds between progress lines

FLAGS = flags.FLAGS


class Skip(Exception):
    """An input that cannot be used: Skip(reason, detail); the reason is counted in the summary."""


def crop_box(width, height, crop):
    """(left, top, right, bottom) of the centred crop x crop square, rounded as the original."""
    left, top = round((width - crop) / 2), round((height - crop) / 2)
    return left, top, left + crop, top + crop


def to_rgb(image):
    """3-channel RGB from any mode; transparent pixels become white, not their hidden colour."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    return image.convert("RGB")


def prepare(source, crop, size):
    """uint8 [size, size, 3]: the centre crop x crop square of an image, resized with Lanczos.

    source: a path or a binary file. Raises Skip for anything that is not a usable image.
    """
    try:
        image = Image.open(source)
    except UnidentifiedImageError:
        raise Skip("not an image", "no image format recognised") from None
    except Image.DecompressionBombError as e:
        raise Skip("too large", str(e)) from None
    except OSError as e:
        raise Skip("unreadable file", e.strerror or str(e)) from None
    with image:
        if min(image.size) < crop:
            raise Skip("smaller than crop", f"{image.width}x{image.height} < {crop}x{crop}")
        try:
            image.load()  # damaged data shows here, as OSError, SyntaxError, ValueError...
        except Exception as e:
            raise Skip("corrupt image", str(e)) from None
        # Photos taken sideways carry their rotation in EXIF; CelebA has none: a no-op there.
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # malformed EXIF: the pixels are fine, keep them as stored
            pass
        image = to_rgb(image)
        image = image.crop(crop_box(image.width, image.height, crop))
        return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), np.uint8)


def encode(pixels, encoding, quality=95):
    if encoding == "raw":
        return pixels.tobytes()
    buffer = io.BytesIO()
    if encoding == "png":
        Image.fromarray(pixels).save(buffer, format="PNG")
    elif encoding == "jpeg":
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    return buffer.getvalue()


def process(name, *, input_dir, crop, size, encoding, quality):
    """(encoded image, None, None) or (None, reason, detail) for one file; runs in a worker."""
    path = os.path.join(input_dir, name)
    try:
        if os.path.getsize(path) == 0:
            raise Skip("empty file", "0 bytes")
        return encode(prepare(path, crop, size), encoding, quality), None, None
    except Skip as skip:
        reason, detail = skip.args
    except OSError as e:  # vanished or unreadable between listing and reading
        reason, detail = "unreadable file", e.strerror or str(e)
    except Exception as e:  # whatever else one odd file provokes, it must not end a long run
        reason, detail = "unexpected error", f"{type(e).__name__}: {e}"
    return None, reason, " ".join(detail.split())  # one line of skipped.txt, whatever the message


def beside(input_dir, name):
    """The path of CelebA's file name in input_dir or one level up (CelebA keeps its lists next
    to the image folder); None when it is in neither."""
    parent = os.path.dirname(os.path.abspath(input_dir))
    candidates = [os.path.join(input_dir, name), os.path.join(parent, name)]
    return next((p for p in candidates if os.path.isfile(p)), None)


def read_partition(input_dir, partition):
    """Names of the files in the partition, from list_eval_partition.txt here or one level up."""
    parent = os.path.dirname(os.path.abspath(input_dir))
    path = beside(input_dir, PARTITION_FILE)
    if path is None:
        raise config.ConfigError(
            f"--partition {partition} needs CelebA's {PARTITION_FILE} in {input_dir} or "
            f"{parent}: download it from CelebA's Eval folder, or leave out --partition")
    selected = set()
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in PARTITIONS.values():
                raise config.ConfigError(
                    f"{path} line {number} is not 'NAME 0|1|2': {line.strip()!r}")
            if fields[1] == PARTITIONS[partition]:
                selected.add(fields[0])
    return selected


# names: the attribute names in the file's order; rows: {file name: "0110..."}, one 0/1
# character per attribute (a string per image: about 40 MB for all of CelebA, where lists of
# ints would take twice that).
Attributes = collections.namedtuple("Attributes", "names rows")


def read_attributes(input_dir):
    """The Attributes of list_attr_celeba.txt here or one level up, or None when there is none.

    CelebA's format: the image count, the attribute names, then one line per image: its name
    and one value per attribute, -1 or 1, all whitespace-separated.
    """
    path = beside(input_dir, config.ATTRIBUTES_FILE)
    if path is None:
        return None
    with open(path) as f:
        lines = f.read().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit() or not lines[1].split():
        raise config.ConfigError(f"{path} does not begin with an image count and the attribute "
                                 f"names, as CelebA's {config.ATTRIBUTES_FILE} does")
    names = lines[1].split()
    rows = {}
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1 or not set(fields[1:]) <= {"-1", "1"}:
            raise config.ConfigError(f"{path} line {number} is not a name and {len(names)} "
                                     f"values of -1 or 1: {line.strip()[:80]!r}")
        rows[fields[0]] = "".join("1" if v == "1" else "0" for v in fields[1:])
    if len(rows) != int(lines[0]):
        raise config.ConfigError(f"{path} lists {len(rows):,} images, but its first line says "
                                 f"{int(lines[0]):,}: download it again")
    return Attributes(tuple(names), rows)


def list_inputs(input_dir, partition=None):
    """(sorted names of image files to process, sorted names of other files, each skipped)."""
    try:
        names = sorted(e.name for e in os.scandir(input_dir)
                       if e.is_file() and e.name not in (PARTITION_FILE, config.ATTRIBUTES_FILE))
    except FileNotFoundError:
        raise config.ConfigError(f"input folder {input_dir} does not exist: run ./download.sh, "
                                 "or pass --input_dir") from None
    except OSError as e:
        raise config.ConfigError(
            f"cannot read the input folder {input_dir} ({e.strerror})") from None
    images = [n for n in names if n.lower().endswith(config.IMAGE_EXTENSIONS)]
    if not images:
        raise config.ConfigError(f"no {'/'.join(config.IMAGE_EXTENSIONS)} images in {input_dir}: "
                                 "run ./download.sh, or pass --input_dir")
    others = [n for n in names if not n.lower().endswith(config.IMAGE_EXTENSIONS)]
    if partition:
        selected = read_partition(input_dir, partition)
        images = [n for n in images if n in selected]
        others = [n for n in others if n in selected]
        if not images:
            raise config.ConfigError(f"none of the images in {input_dir} is in the {partition} "
                                     f"partition of {PARTITION_FILE}")
    return images, others


def plan_shards(input_dir, names, shards, settings, attributes=None):
    """[(file name, input names, key)]: contiguous runs of the sorted names, balanced in size.

    The key fingerprints what the shard's bytes depend on; a complete shard whose key still
    matches is kept by a rerun. Without attributes it is what it was before they were stored.
    """
    shards = min(shards, len(names))
    plan = []
    for i in range(shards):
        part = names[i * len(names) // shards:(i + 1) * len(names) // shards]
        stats = [os.stat(os.path.join(input_dir, n)) for n in part]
        inputs = [[n, s.st_size, s.st_mtime_ns] for n, s in zip(part, stats)]
        described = [FORMAT, settings, inputs]
        if attributes:
            described.append([attributes.names, [attributes.rows[n] for n in part]])
        key = hashlib.sha256(json.dumps(described).encode()).hexdigest()
        plan.append((SHARD.format(i, shards), part, key))
    return plan


def write_progress(output_dir, done):
    files.write_text(os.path.join(output_dir, PROGRESS),
                     json.dumps({"shards": done}, indent=1) + "\n")


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def lock(output_dir):
    """An exclusive lock on the folder until the returned fd is closed: one writer at a time."""
    fd = os.open(output_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise config.ConfigError(f"another prepro.py is writing to {output_dir}: wait for it to "
                                 "finish, or choose another --output_dir") from None
    return fd


def check_settings(*, crop, size, shards, workers, partition, encoding, quality):
    for name, value in [("crop", crop), ("size", size), ("shards", shards), ("workers", workers)]:
        if value is not None and value <= 0:
            raise config.ConfigError(f"--{name} must be a positive number, not {value}")
    if encoding not in ENCODINGS:
        raise config.ConfigError(
            f"--encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
    if encoding == "jpeg" and not 1 <= quality <= 100:
        raise config.ConfigError(f"--quality must be in [1, 100], not {quality}")
    if partition is not None and partition not in PARTITIONS:
        raise config.ConfigError(
            f"--partition must be one of {', '.join(PARTITIONS)}, not {partition!r}")


def cores():
    """Cores this process may use (fewer than the machine's under taskset or in a container)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def say(*args):
    print(*args, flush=True)


# What the writing steps share: where from, where to, how, with how many processes, said where,
# and the Attributes stored with the images (None: images alone).
Job = collections.namedtuple("Job", "input_dir output_dir settings workers out attributes")


def build(input_dir, output_dir, *, crop=108, size=64, shards=16, workers=None, partition=None,
          encoding="png", quality=95, out=say):
    """Write (or finish writing) the shards, skipped.txt and manifest.json; returns the manifest.
    out: where the progress lines go."""
    check_settings(crop=crop, size=size, shards=shards, workers=workers, partition=partition,
                   encoding=encoding, quality=quality)
    workers = workers or cores()
    names, others = list_inputs(input_dir, partition)  # before creating anything
    attributes = read_attributes(input_dir)
    unlisted = [n for n in names if attributes and n not in attributes.rows]
    if unlisted:
        raise config.ConfigError(
            f"{beside(input_dir, config.ATTRIBUTES_FILE)} has no line for {len(unlisted):,} of "
            f"the images (e.g. {unlisted[0]}): add them, or move the file away to prepare the "
            "images without attributes")
    if os.path.realpath(input_dir) == os.path.realpath(output_dir):
        raise config.ConfigError(f"--output_dir must differ from --input_dir ({input_dir})")
    settings = {"crop": crop, "size": size, "encoding": encoding, "resample": "lanczos",
                "partition": partition, "shards": min(shards, len(names))}
    if encoding == "jpeg":
        settings["quality"] = quality
    plan = plan_shards(input_dir, names, shards,
                       {k: v for k, v in settings.items() if k != "shards"}, attributes)
    try:
        os.makedirs(output_dir, exist_ok=True)
        held = lock(output_dir)
    except OSError as e:
        raise config.ConfigError(f"cannot write the output folder {output_dir} ({e.strerror}): "
                                 "choose another --output_dir") from None
    try:
        return write(Job(input_dir, output_dir, settings, workers, out, attributes), plan, others)
    finally:
        os.close(held)


def complete_shards(output_dir, plan):
    """{file: its progress entry} of the plan's shards that a run before completed, after
    removing the rest: a crash's leftovers, shards of an earlier --shards count, and the shards
    about to be rewritten. From then on, a file under a shard's name is a complete one of this
    plan."""
    path = lambda name: os.path.join(output_dir, name)
    try:
        progress = json.loads(read_text(path(PROGRESS)) or "{}").get("shards", {})
    except ValueError:
        progress = {}  # damaged: treat every shard as missing
    done = {}
    for file, _, key in plan:
        entry = progress.get(file)
        if entry and entry.get("key") == key and os.path.isfile(path(file)) and \
                os.path.getsize(path(file)) == entry.get("bytes"):
            done[file] = entry
    stale = [n for n in sorted(os.listdir(output_dir)) if OURS.fullmatch(n) and n not in done]
    if len(done) < len(plan) or stale:
        if os.path.exists(path(config.MANIFEST)):  # it would describe a mix of old and new shards
            os.remove(path(config.MANIFEST))
        for name in stale:
            os.remove(path(name))
        write_progress(output_dir, done)
        files.sync(output_dir)
    return done


def write(job, plan, others):
    input_dir, output_dir, settings = job.input_dir, job.output_dir, job.settings
    path = lambda name: os.path.join(output_dir, name)
    done = complete_shards(output_dir, plan)
    todo = [(file, names, key) for file, names, key in plan if file not in done]
    total = sum(len(names) for _, names, _ in todo)
    job = job._replace(workers=max(1, min(job.workers, total)))
    head = (f"{input_dir} -> {output_dir}: {sum(len(n) for _, n, _ in plan):,} images in "
            f"{len(plan)} shards"
            + (f", each with its {len(job.attributes.names)} attributes" if job.attributes else ""))
    if todo:
        job.out(f"{head}, {len(done)} already complete; preparing {total:,} images with "
                f"{job.workers} worker{'s' if job.workers > 1 else ''}.")
        write_shards(job, todo, done, total)
    else:
        job.out(f"{head}, all already complete.")

    unsupported = "not " + "/".join(config.IMAGE_EXTENSIONS)
    skipped = sorted([[n, "unsupported extension", unsupported] for n in others] +
                     [s for entry in done.values() for s in entry["skipped"]])
    reasons = {}
    for _, reason, _ in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    reasons = dict(sorted(reasons.items()))
    count = sum(done[file]["count"] for file, _, _ in plan)
    text = "".join("\t".join(s) + "\n" for s in skipped)
    if read_text(path(SKIPPED)) != text:
        files.write_text(path(SKIPPED), text)
    if count == 0:
        raise config.ConfigError(f"none of the images in {input_dir} could be used: see the "
                                 f"reasons in {path(SKIPPED)}")
    manifest = {"size": settings["size"], "crop": settings["crop"], "channels": 3,
                "encoding": settings["encoding"], **({"quality": settings["quality"]}
                                                     if "quality" in settings else {}),
                "count": count,
                "shards": [{"file": file, "count": done[file]["count"], "bytes": done[file]["bytes"]}
                           for file, _, _ in plan],
                "skipped": reasons, "settings": settings,
                **({"attributes": list(job.attributes.names)} if job.attributes else {})}
    text = json.dumps(manifest, indent=1) + "\n"
    if read_text(path(config.MANIFEST)) != text:  # written last: data.py finds it only when done
        files.write_text(path(config.MANIFEST), text)
    size = sum(os.path.getsize(path(file)) for file, _, _ in plan)
    listed = ", ".join(f"{n:,} {r}" for r, n in reasons.items())
    job.out(f"Done: {count:,} images of {settings['size']}x{settings['size']} in {len(plan)} "
            f"shards ({size / 1e6:,.1f} MB) in {output_dir}; skipped {len(skipped):,}"
            + (f" ({listed}), listed in {path(SKIPPED)}." if skipped else "."))
    return manifest


def ignore_interrupts():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle, once


def write_shards(job, todo, done, total):
    """Prepare the images of the todo shards in a process pool and write them in sorted order."""
    # spawn, not fork: the parent is about to load TensorFlow, and forking it can deadlock the
    # children. An executor rather than multiprocessing.Pool: a worker that dies raises instead
    # of hanging. Started first, so that the workers start up while TensorFlow loads.
    pool = ProcessPoolExecutor(job.workers, multiprocessing.get_context("spawn"),
                               initializer=ignore_interrupts) if job.workers > 1 else None
    try:
        write_records(job, todo, done, total=total, pool=pool)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def write_records(job, todo, done, *, total, pool):
    from utils import tf_setup  # noqa: F401 (here: the workers and the error paths do without)
    import tensorflow as tf

    def example(name, image):
        feature = lambda value: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        features = {"image": feature(image), "filename": feature(name.encode())}
        if job.attributes:
            features["attributes"] = tf.train.Feature(int64_list=tf.train.Int64List(
                value=[int(v) for v in job.attributes.rows[name]]))
        proto = tf.train.Example(features=tf.train.Features(feature=features))
        return proto.SerializeToString(deterministic=True)  # map order fixed: same bytes every run

    settings = job.settings
    task = functools.partial(process, input_dir=job.input_dir, crop=settings["crop"],
                             size=settings["size"], encoding=settings["encoding"],
                             quality=settings.get("quality", 95))
    names = [n for _, shard, _ in todo for n in shard]
    chunk = max(1, min(64, total // (4 * job.workers)))
    results = pool.map(task, names, chunksize=chunk) if pool else map(task, names)  # in order
    start = last = time.monotonic()
    processed = 0
    for file, shard, key in todo:
        final = os.path.join(job.output_dir, file)
        count, skipped = 0, []
        # Named as a shard only once complete: a crash leaves NAME.tmp, which a rerun deletes.
        with files.replacing(final) as tmp, tf.io.TFRecordWriter(tmp) as writer:
            for name in shard:
                image, reason, detail = next(results)
                if image is None:
                    skipped.append([name, reason, detail])
                else:
                    writer.write(example(name, image))
                    count += 1
                processed += 1
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY or processed == total:
                    rate = processed / max(now - start, 1e-9)
                    left = cli.format_duration((total - processed) / rate)
                    job.out(f"  {processed:,}/{total:,} images ({100 * processed // total}%), "
                            f"{rate:,.0f} img/s, {left} left")
                    last = now
        done[file] = {"key": key, "count": count, "bytes": os.path.getsize(final),
                      "skipped": skipped}
        write_progress(job.output_dir, done)


def run():
    try:
        build(FLAGS.input_dir, FLAGS.output_dir, crop=FLAGS.crop, size=FLAGS.size,
              shards=FLAGS.shards, workers=FLAGS.workers, partition=FLAGS.partition,
              encoding=FLAGS.encoding, quality=FLAGS.quality)
    except KeyboardInterrupt:
        print("prepro.py: interrupted: the same command resumes, keeping the complete shards",
              file=sys.stderr)
        raise


def define_flags():
    flags.DEFINE_string("input_dir", "data/img_align_celeba",
                        "folder of .jpg/.jpeg/.png/.webp images (top level only), as ./download.sh "
                        f"unpacks CelebA; its {config.ATTRIBUTES_FILE} (here or one level up) is "
                        "stored with the images")
    flags.DEFINE_string("output_dir", "data/celeba", "where the shards and manifest.json go; "
                        "running again resumes there")
    flags.DEFINE_integer("crop", 108, "side of the centre square cut from each image (original 108)")
    flags.DEFINE_integer("size", 64, "side of the stored images (original 64)")
    flags.DEFINE_integer("shards", 16, "TFRecord files to write (16: ~100 MB each for all of CelebA)")
    flags.DEFINE_integer("workers", None, "processes decoding images (default: all cores)")
    flags.DEFINE_enum("partition", None, list(PARTITIONS),
                      f"only this split of CelebA's {PARTITION_FILE} (in --input_dir or its parent)")
    flags.DEFINE_enum("encoding", "png", ENCODINGS, "how images are stored: png (lossless) or jpeg")
    flags.DEFINE_integer("quality", 95, "JPEG quality, with --encoding jpeg")


if __name__ == "__main__":
    cli.main(run, define_flags)
