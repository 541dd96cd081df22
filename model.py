"""The DCGAN generator and discriminator, and the inference-mode sampler.

Both networks follow the image shape. The generator projects z to a small map (4x4x512 for
64x64 images, 7x7x128 for 28x28) and doubles it with stride-2 transposed convolutions until it
reaches the image; the discriminator mirrors it with stride-2 convolutions and ends in one logit.
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
        self.start_shape = (size, size, depth)
        self.project = linear(size * size * depth, init)
        self.bn0 = batch_norm(bn_decay, bn_epsilon)
        self.deconvs = [deconv2d(depth // 2 ** (i + 1), kernel_size, init) for i in range(layers - 1)]
        self.bns = [batch_norm(bn_decay, bn_epsilon) for _ in range(layers - 1)]
        self.to_image = deconv2d(channels, kernel_size, init)  # no batch norm on the output
        self(tf.zeros((1, z_dim)), training=False)  # create the weights now

    def call(self, z, training=False):
        x = tf.reshape(self.project(z), (-1, *self.start_shape))
        x = tf.nn.relu(self.bn0(x, training=training))
        for deconv, bn in zip(self.deconvs, self.bns):
            x = tf.nn.relu(bn(deconv(x), training=training))
        return tf.tanh(self.to_image(x))

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
        self.convs = [conv2d(df_dim * 2 ** i, kernel_size, init) for i in range(layers)]
        self.bns = [batch_norm(bn_decay, bn_epsilon) for _ in range(layers - 1)]  # none on the input
        self.logit = linear(1, init)
        self(tf.zeros((1, image_size, image_size, channels)), training=False)

    def call(self, images, training=False):
        x = lrelu(self.convs[0](images))
        for conv, bn in zip(self.convs[1:], self.bns):
            x = lrelu(bn(conv(x), training=training))
        x = tf.reshape(x, (-1, x.shape[1] * x.shape[2] * x.shape[3]))
        return self.logit(x)[:, 0]  # one logit per image, no sigmoid


def count_params(network):
    return sum(int(tf.size(v)) for v in network.trainable_variables)
