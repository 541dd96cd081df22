"""Building blocks of the DCGAN, as in the original ops.py, made of Keras layers.

conv2d, deconv2d and linear return a new layer each time they are called: in Keras a layer owns
its weights, which is what the original's variable scopes did; with spectral=True, one whose
kernel is spectrally normalised. lrelu is a plain function.
batch_norm is the only class, for the reason the seminar's quiz asks about: it has state that
must outlive a single call (gamma and beta, and the moving mean and variance that training
updates and inference reads), so it must be one object created once and called many times.
"""
import keras
import tensorflow as tf

import config


def initializer(init):
    """'glorot' is the original's Glorot uniform; 'normal' is the paper's N(0, 0.02)."""
    if init == "glorot":
        return keras.initializers.GlorotUniform()
    if init == "normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)
    raise config.ConfigError(f"--init must be 'glorot' (original) or 'normal' (paper), not {init!r}")


class SpectralNorm:
    """A layer whose kernel W is used as W / sigma(W), sigma its largest singular value
    (spectral normalisation, Miyato et al. 2018): each layer of D is then at most 1-Lipschitz.
    sigma is estimated by power iteration on W reshaped to [inputs, outputs], one iteration per
    call in training, from u, the estimate of the top right singular vector, which each call
    carries on from; u is a weight (not trained), so it is checkpointed and a run resumes with
    it. Gradients flow through sigma but not through u and v, as in the paper."""

    def build(self, input_shape):
        super().build(input_shape)
        self.u = self.add_weight(shape=(1, self.kernel.shape[-1]), trainable=False, name="u",
                                 initializer=keras.initializers.RandomNormal(stddev=1.0),
                                 aggregation="mean")  # every replica finds the same u

    def normalised_kernel(self, training):
        w = tf.reshape(self.kernel, [-1, self.kernel.shape[-1]])
        u = tf.cast(self.u, w.dtype)
        v = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(u, w, transpose_b=True)))
        if training:
            u = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(v, w)))
            self.u.assign(tf.cast(u, self.u.dtype))
        sigma = tf.matmul(tf.matmul(v, w), u, transpose_b=True)[0, 0]
        return self.kernel / sigma

    def call(self, inputs, training=False):
        outputs = self.product(inputs, self.normalised_kernel(training))
        return outputs + self.bias if self.use_bias else outputs


class SpectralConv2D(SpectralNorm, keras.layers.Conv2D):
    def product(self, inputs, kernel):
        return self.convolution_op(inputs, kernel)


class SpectralDense(SpectralNorm, keras.layers.Dense):
    def product(self, inputs, kernel):
        return tf.matmul(inputs, kernel)


def conv2d(filters, kernel_size=config.KERNEL_SIZE, init=config.INIT, name=None, spectral=False):
    """Strided convolution: halves height and width."""
    return (SpectralConv2D if spectral else keras.layers.Conv2D)(
        filters, kernel_size, strides=2, padding="same", kernel_initializer=initializer(init),
        name=name)


def deconv2d(filters, kernel_size=config.KERNEL_SIZE, init=config.INIT, name=None):
    """Transposed convolution (the gradient of conv2d): doubles height and width."""
    return keras.layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="same",
                                        kernel_initializer=initializer(init), name=name)


def linear(units, init=config.INIT, name=None, spectral=False):
    return (SpectralDense if spectral else keras.layers.Dense)(
        units, kernel_initializer=initializer(init), name=name)


def lrelu(x, leak=0.2):
    """Leaky ReLU, max(x, leak * x), with the paper's leak of 0.2."""
    return tf.maximum(x, leak * x)


class batch_norm(keras.layers.BatchNormalization):
    """Batch normalisation with the original's tf.contrib defaults (decay 0.99, epsilon 1e-3).

    training=True normalises with the batch's own mean and variance and moves the moving
    averages towards them: moving = decay * moving + (1 - decay) * batch. training=False
    normalises with the moving averages, so an output depends on its own input only.

    Built under a tf.distribute strategy with several replicas, the batch statistics are those
    of the global batch (summed across replicas), so splitting a batch changes nothing.
    """

    def __init__(self, decay=config.BN_DECAY, epsilon=config.BN_EPSILON, name=None, **kwargs):
        synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
        super().__init__(momentum=decay, epsilon=epsilon, synchronized=synchronized, name=name,
                         **kwargs)
