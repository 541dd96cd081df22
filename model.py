"""The DCGAN generator and discriminator, the architecture record they are built from, and the
inference-mode sampler.

Both networks follow the image shape. The generator projects z to a small map (4x4x512 for
64x64 images, 7x7x128 for 28x28) and doubles it with stride-2 transposed convolutions until it
reaches the image; the discriminator mirrors it with stride-2 convolutions and ends in one logit.
Each network is a keras.Sequential, which also makes every variable (batch norm's moving
statistics included) reachable for tf.train.Checkpoint: Keras 3 does not checkpoint layers kept
in plain Python lists.

A conditional DCGAN (Mirza & Osindero 2014, in carpedm20/DCGAN-tensorflow's form) takes a label
vector y besides z or the image: one-hot classes, or 0/1 attributes. y joins the input of every
weight layer of both networks: concatenated to a vector, or broadcast over the positions of a
map and concatenated as channels. The layers are the same; only their inputs grow.
"""
import dataclasses
import json

import keras
import numpy as np
import tensorflow as tf

import config
from ops import batch_norm, conv2d, deconv2d, linear, lrelu


def layer_plan(image_size):
    """Number of stride-2 layers and the size of the smallest map: 64 -> (4, 4), 28 -> (2, 7).

    Halve while the size is even and the half is at least 4 (the original's 4x4 projection).
    """
    layers, size = 0, image_size
    while size % 2 == 0 and size // 2 >= 4:
        layers, size = layers + 1, size // 2
    if layers == 0:
        raise config.ConfigError(
            f"image size {image_size} cannot be built from stride-2 layers: use an even size of at "
            "least 8 that halves down to 4 or more (for example 28, 32, 64 or 128)")
    return layers, size


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Everything the shapes of the two networks depend on. Every checkpoint records it (and
    flags.json), a resumed run must have the same, and sample.py, export.py and evaluate.py
    rebuild the generator from it alone."""
    image_size: int
    channels: int
    z_dim: int = config.Z_DIM
    gf_dim: int = config.GF_DIM
    df_dim: int = config.DF_DIM
    kernel_size: int = config.KERNEL_SIZE
    labels: str = ""  # conditioning: "" none, "classes" (one-hot y) or "attributes" (0/1 y)
    label_names: tuple = ()  # the classes or attributes, in y's order
    spectral_norm: bool = False  # D's weights spectrally normalised, and D without batch norm

    def __post_init__(self):
        layer_plan(self.image_size)  # refuses a size the networks cannot be built for
        object.__setattr__(self, "label_names", tuple(self.label_names))  # JSON gives a list

    @property
    def y_dim(self):
        return len(self.label_names)

    def to_json(self):
        """Unconditional and unnormalised, the six fields it has always been: old runs' records
        still match."""
        fields = dataclasses.asdict(self)
        if not self.labels:
            del fields["labels"], fields["label_names"]
        if not self.spectral_norm:
            del fields["spectral_norm"]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))

    def differences(self, other):
        """'name=value, ...' of the fields where self and other differ, for each of the two."""
        names = [f.name for f in dataclasses.fields(self)
                 if getattr(self, f.name) != getattr(other, f.name)]
        return tuple(", ".join(f"{n}={getattr(arch, n)}" for n in names) for arch in (self, other))


def with_labels(x, y):
    """x with y joined: concatenated to a vector, or broadcast to maps of x's size and joined
    as channels."""
    y = keras.ops.cast(y, x.dtype)
    if len(x.shape) == 4:
        y = keras.ops.ones_like(x[..., :1]) * y[:, None, None, :]
    return keras.ops.concatenate([x, y], axis=-1)


def network(layers, y_dim, name="layers"):
    """The layers in a row (net[0] is the Input); with y_dim, a two-input network [x, y] in
    which y joins the input of every weight layer."""
    if not y_dim:
        return keras.Sequential(layers, name=name)
    x_in, y_in = layers[0], keras.Input((y_dim,))
    x = x_in
    for layer in layers[1:]:
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D,
                              keras.layers.Conv2DTranspose)):
            x = with_labels(x, y_in)
        x = layer(x)
    return keras.Model([x_in, y_in], x, name=name)


def label_vector(arch, labels):
    """y, the vector a conditional network takes beside z or an image, of each label: the one-hot
    row of a class index, or a row of 0/1 attributes as it is. Every y is made here."""
    if arch.labels == "classes":
        return tf.one_hot(tf.cast(labels, tf.int32), arch.y_dim)
    return tf.cast(labels, tf.float32)


def each_label(arch):
    """The labels of each class in turn, or of each attribute alone (1, the others 0): the rows
    of a conditional run's sample grid."""
    if arch.labels == "classes":
        return np.arange(arch.y_dim)
    return np.eye(arch.y_dim, dtype=np.float32)


class Generator(keras.Model):
    def __init__(self, arch, init=config.INIT):
        super().__init__(name="generator")
        self.arch = arch
        layers, size = layer_plan(arch.image_size)
        depth = arch.gf_dim * 2 ** (layers - 1)  # 512 for 64x64, halved by each layer
        net = [keras.Input((arch.z_dim,)),
               linear(size * size * depth, init), keras.layers.Reshape((size, size, depth)),
               batch_norm(), keras.layers.ReLU()]
        for _ in range(layers - 1):
            depth //= 2
            net += [deconv2d(depth, arch.kernel_size, init), batch_norm(), keras.layers.ReLU()]
        net += [deconv2d(arch.channels, arch.kernel_size, init),
                keras.layers.Activation("tanh")]  # no batch norm on the output
        self.net = network(net, arch.y_dim)

    def call(self, z, y=None, training=False):
        """y: the label vectors (label_vector) of a conditional generator."""
        return self.net([z, y] if self.arch.labels else z, training=training)

    def sample(self, z, y=None):
        """The sampler (the seminar's quiz): batch norm in inference mode, so it normalises with
        the moving mean and variance learnt in training and each image depends on its own z
        only. Training mode would normalise with the statistics of this batch of z instead."""
        return self(z, y, training=False)


class Discriminator(keras.Model):
    def __init__(self, arch, init=config.INIT):
        super().__init__(name="discriminator")
        self.arch = arch
        layers, _ = layer_plan(arch.image_size)
        spectral = arch.spectral_norm  # as Miyato et al.'s D: no batch norm beside it
        net = [keras.Input((arch.image_size, arch.image_size, arch.channels)),
               conv2d(arch.df_dim, arch.kernel_size, init, spectral=spectral),
               keras.layers.Activation(lrelu)]  # no batch norm on the input layer
        for i in range(1, layers):
            net += [conv2d(arch.df_dim * 2 ** i, arch.kernel_size, init, spectral=spectral),
                    *([] if spectral else [batch_norm()]), keras.layers.Activation(lrelu)]
        net += [keras.layers.Flatten(), linear(1, init, spectral=spectral)]  # one logit
        self.net = network(net, arch.y_dim)

    def call(self, images, y=None, training=False):
        return self.net([images, y] if self.arch.labels else images, training=training)[:, 0]


def draw_z(n, z_dim, seed):
    """n z ~ U(-1, 1), as in training, from NumPy's generator of the seed: the first n rows are
    the same for any larger n, so a command's z do not depend on how many it asks for."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, z_dim)).astype(np.float32)


def to_pixels(images):
    """The generator's tanh range [-1, 1] -> uint8 pixels, rounding half to even (as np.rint)."""
    images = tf.cast(images, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def sample_pixels(generator, z, batch_size, y=None):
    """The sampler's uint8 images of z (and of y, the label vectors of a conditional run), one
    NumPy batch at a time, so any number fits in memory."""
    for start in range(0, len(z), batch_size):
        part = slice(start, start + batch_size)
        yield to_pixels(generator.sample(z[part], None if y is None else y[part])).numpy()


def layers_of(network, kind):
    return [layer for layer in network.net.layers if isinstance(layer, kind)]


def count_params(network):
    return sum(int(tf.size(v)) for v in network.trainable_variables)
