"""Differentiable augmentation of the images D sees (DiffAugment, Zhao et al. 2020), and the
adaptive probability of ADA (Karras et al. 2020).

On a few hundred images D learns the training set by heart: its outputs on real and fake
separate, and G's gradient dies. Augmenting every image D sees, real and generated, in the D
update and in the G update alike, stops D from telling them apart by what the training images
look like exactly, and, being differentiable, lets G's gradient through. G itself is never
shown an augmented image as a target: its samples come without augmentation, unless D is shown
augmentations so often that G learns to draw them (they "leak"); ADA's p counters that.

The three policies are DiffAugment's (its DiffAugment_tf.py), on images in [-1, 1]:
    translation   shift by up to 1/8 of the side, padding with 0
    cutout        a square of half the side set to 0, at a random place
    color         brightness, saturation and contrast, each by a random factor
Each image gets each policy with probability p (1 without ADA). All randomness is stateless,
from a seed pair, so a resumed run augments as the run that never stopped did.
"""
import tensorflow as tf

POLICIES = ("translation", "cutout", "color")
TRANSLATION = 0.125  # the largest shift, a share of the side
CUTOUT = 0.5  # the square's side, a share of the image's
ADA_KIMG = 500  # ADA's speed: p can go from 0 to 1 in this many thousand real images
ADA_TARGET = 0.6  # ADA's target for r_t = E[sign(D(x_real))]


def check_policy(names):
    """The policies named, in POLICIES' order; ValueError for one it does not know."""
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}: choose from "
                         f"{', '.join(POLICIES)}")
    return tuple(p for p in POLICIES if p in names)


class Rows:
    """Which rows of the global batch a replica's images are: each image's random numbers are
    drawn for the whole global batch and the replica takes its own, so that replicas augment as
    one device would (as the solver draws z)."""

    def __init__(self, images, first=0, total=None):
        self.count = tf.shape(images)[0]
        self.first, self.total = first, self.count if total is None else total

    def uniform(self, seed, dtype=tf.float32, low=0.0, high=1.0):
        """A number for each image, shaped [count, 1]."""
        every = tf.random.stateless_uniform((self.total, 1), seed=seed, minval=low, maxval=high,
                                            dtype=dtype)
        return every[self.first:self.first + self.count]


def seeds(seed, n):
    """n independent seed pairs from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def translation(images, seed, rows):
    """Each image shifted by whole pixels, up to TRANSLATION of its side each way, with 0 where
    it moved away from."""
    size = tf.shape(images)[1]
    most = tf.cast(tf.round(tf.cast(size, tf.float32) * TRANSLATION), tf.int32)
    shifted = images
    for axis, axis_seed in zip((1, 2), seeds(seed, 2)):
        shift = rows.uniform(axis_seed, tf.int32, -most, most + 1)
        source = tf.range(size)[None, :] - shift  # the pixel each pixel comes from
        inside = (source >= 0) & (source < size)
        shifted = tf.gather(shifted, tf.clip_by_value(source, 0, size - 1), axis=axis,
                            batch_dims=1)
        inside = inside[:, :, None, None] if axis == 1 else inside[:, None, :, None]
        shifted = tf.where(inside, shifted, tf.zeros_like(shifted))
    return shifted


def cutout(images, seed, rows):
    """Each image with a square of CUTOUT of its side set to 0, its centre anywhere in the
    image (so part of it may fall outside)."""
    size = tf.shape(images)[1]
    side = tf.cast(tf.cast(size, tf.float32) * CUTOUT + 0.5, tf.int32)
    inside = []
    for axis_seed in seeds(seed, 2):
        centre = rows.uniform(axis_seed, tf.int32, 0, size + (1 - side % 2))
        position = tf.range(size)[None, :]
        inside.append((position >= centre - side // 2) & (position < centre - side // 2 + side))
    square = inside[0][:, :, None, None] & inside[1][:, None, :, None]
    return tf.where(square, tf.zeros_like(images), images)


def color(images, seed, rows):
    """Brightness (+ U(-0.5, 0.5)), saturation (x U(0, 2) about each pixel's mean over the
    channels) and contrast (x U(0.5, 1.5) about the image's mean), each image its own."""
    # Drawn in float32 whatever the images' type: float16 draws would be other numbers.
    brightness, saturation, contrast = (tf.cast(rows.uniform(s), images.dtype)[:, :, None, None]
                                        for s in seeds(seed, 3))
    images = images + (brightness - 0.5)
    mean = tf.reduce_mean(images, axis=3, keepdims=True)
    images = (images - mean) * (saturation * 2.0) + mean
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * (contrast + 0.5) + mean


AUGMENTATIONS = {"translation": translation, "cutout": cutout, "color": color}


def augment(images, policy, seed, p=None, first=0, total=None):
    """images [n, size, size, channels] with each augmentation of the policy applied, in
    POLICIES' order, to each image with probability p (None: to every image). seed: a stateless
    seed pair; the same seed augments the same images the same way. first, total: the images
    are rows first to first + n of a global batch of total (default: all of it)."""
    rows, pairs = Rows(images, first, total), seeds(seed, 2 * len(policy))
    for i, name in enumerate(policy):
        augmented = AUGMENTATIONS[name](images, pairs[2 * i], rows)
        if p is None:
            images = augmented
        else:
            chosen = rows.uniform(pairs[2 * i + 1])[:, :, None, None] < p
            images = tf.where(chosen, augmented, images)
    return images


def adjust(p, r_t, target, images, kimg=ADA_KIMG):
    """ADA's step: p moves up when D is overconfident on real images (r_t above target), down
    when not, by images / (kimg * 1000), within [0, 1]."""
    return tf.clip_by_value(p + tf.sign(r_t - target) * images / (kimg * 1000.0), 0.0, 1.0)
