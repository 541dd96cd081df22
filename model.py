"""The DCGAN generator and discriminator, and the inference-mode sampler.

Both networks follow the image shape. The generator projects z to a small map (4x4x512 for
64x64 images, 7x7x128 for 28x28) and doubles it with stride-2 transposed convolutions until it
reaches the image; the discriminator mirrors it with stride-2 convolutions and ends in one logit.
Each network is a keras.Sequential, which also makes every variable (batch norm's moving
statistics included) reachable for tf.train.Checkpoint: Keras 3 does not checkpoint layers kept
in plain Python lists.
"""
import keras
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


class Generator(keras.Model):
    def __init__(self, image_size, channels, z_dim=config.Z_DIM, gf_dim=config.GF_DIM,
                 kernel_size=config.KERNEL_SIZE, init=config.INIT,
                 bn_decay=config.BN_DECAY, bn_epsilon=config.BN_EPSILON):
        super().__init__(name="generator")
        self.arch = dict(image_size=image_size, channels=channels, z_dim=z_dim, gf_dim=gf_dim,
                         kernel_size=kernel_size)
        layers, size = layer_plan(image_size)
        depth = gf_dim * 2 ** (layers - 1)  # 512 for 64x64, halved by each layer
        net = [keras.Input((z_dim,)),
               linear(size * size * depth, init), keras.layers.Reshape((size, size, depth)),
               batch_norm(bn_decay, bn_epsilon), keras.layers.ReLU()]
        for _ in range(layers - 1):
            depth //= 2
            net += [deconv2d(depth, kernel_size, init), batch_norm(bn_decay, bn_epsilon),
                    keras.layers.ReLU()]
        net += [deconv2d(channels, kernel_size, init), keras.layers.Activation("tanh")]  # no BN
        self.net = keras.Sequential(net, name="layers")

    def call(self, z, training=False):
        return self.net(z, training=training)

    def sample(self, z):
        """The sampler (the seminar's quiz): batch norm in inference mode, so it normalises with
        the moving mean and variance learnt in training and each image depends on its own z
        only. Training mode would normalise with the statistics of this batch of z instead."""
        return self(z, training=False)


class Discriminator(keras.Model):
    def __init__(self, image_size, channels, df_dim=config.DF_DIM,
                 kernel_size=config.KERNEL_SIZE, init=config.INIT,
                 bn_decay=config.BN_DECAY, bn_epsilon=config.BN_EPSILON):
        super().__init__(name="discriminator")
        self.arch = dict(image_size=image_size, channels=channels, df_dim=df_dim,
                         kernel_size=kernel_size)
        layers, _ = layer_plan(image_size)
        net = [keras.Input((image_size, image_size, channels)),
               conv2d(df_dim, kernel_size, init), keras.layers.Activation(lrelu)]  # no BN on input
        for i in range(1, layers):
            net += [conv2d(df_dim * 2 ** i, kernel_size, init), batch_norm(bn_decay, bn_epsilon),
                    keras.layers.Activation(lrelu)]
        net += [keras.layers.Flatten(), linear(1, init)]  # one logit, no sigmoid
        self.net = keras.Sequential(net, name="layers")

    def call(self, images, training=False):
        return self.net(images, training=training)[:, 0]


def to_pixels(images):
    """The generator's tanh range [-1, 1] -> uint8 pixels, rounding half to even (as np.rint)."""
    images = tf.cast(images, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def layers_of(network, kind):
    return [layer for layer in network.net.layers if isinstance(layer, kind)]


def count_params(network):
    return sum(int(tf.size(v)) for v in network.trainable_variables)
