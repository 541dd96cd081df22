"""The stride-2 SAME convolution and transposed convolution of ops.py, computed by faster routes.

On the CPU, TensorFlow's transposed convolution and its convolution gradients are 3 to 7 times
slower than a forward convolution of the same size on small maps (the 4x4 and 8x8 ends of both
networks), while forward convolutions run near the machine's peak. These layers compute the
same function with the same variables, through forward convolutions only:

- A stride-2 transposed convolution is four stride-1 convolutions, one per output phase
  (even/odd row, even/odd column), each with the taps of the kernel that reach that phase, and
  their outputs interleaved by depth_to_space.
- The input gradient of a strided convolution is the transposed convolution (as above); the
  input gradient of a transposed convolution is the strided convolution.
- The kernel gradient of a strided convolution is one forward convolution: batch and channels
  swapped, the output gradient as the filter, dilation 2.

Layers on larger maps, and any layer when a GPU is visible, keep TensorFlow's own kernels.
tests/test_fastconv.py checks outputs and gradients against Keras' layers.
"""
import keras
import tensorflow as tf

SMALL = 8  # the fast routes pay off on maps this size or smaller (measured, batch 64, 2 cores)
ON_CPU = not tf.config.list_physical_devices("GPU")


def same_pads(k):
    """Before and after padding of a SAME stride-2 convolution whose input is twice its output."""
    return (k - 2) // 2, k - 2 - (k - 2) // 2


def phase_taps(k):
    """For output phase p of a stride-2 SAME transposed convolution, out[2m + p] is the sum of
    in[m + t] * w[a] over its taps (t, a): per phase, the kernel indices a (ordered by t) and the
    first and last offsets t."""
    before = same_pads(k)[0]
    taps = []
    for p in (0, 1):
        offsets = sorted(((p + before - a) // 2, a) for a in range(k) if (p + before - a) % 2 == 0)
        taps.append(([a for _, a in offsets], offsets[0][0], offsets[-1][0]))
    return taps


def deconv_by_phases(y, w):
    """tf.nn.conv2d_transpose(y, w, strides 2, SAME); w: (k, k, out channels, in channels)."""
    taps = phase_taps(w.shape[0])
    phases = []
    for rows, top, bottom in taps:
        for cols, left, right in taps:
            sub = tf.transpose(tf.gather(tf.gather(w, rows, axis=0), cols, axis=1), [0, 1, 3, 2])
            padding = [[0, 0], [-top, bottom], [-left, right], [0, 0]]
            phases.append(tf.nn.conv2d(y, sub, 1, padding))
    out = tf.stack(phases, axis=3)  # n, h, w, 4 phases, channels
    shape = tf.shape(out)
    return tf.nn.depth_to_space(tf.reshape(out, [shape[0], shape[1], shape[2], 4 * w.shape[2]]), 2)


def conv_kernel_gradient(x, g, k):
    """dW of conv2d(x, W, strides 2, SAME) for the output gradient g."""
    before, after = same_pads(k)
    x = tf.transpose(tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]]), [3, 1, 2, 0])
    dw = tf.nn.conv2d(x, tf.transpose(g, [1, 2, 0, 3]), 1, "VALID", dilations=2)
    return tf.transpose(dw, [1, 2, 0, 3])


@tf.autograph.experimental.do_not_convert
def strided_conv(x, w):
    @tf.custom_gradient
    def op(x, w):
        def gradient(g):
            return deconv_by_phases(g, w), conv_kernel_gradient(x, g, w.shape[0])
        return tf.nn.conv2d(x, w, 2, "SAME"), gradient
    return op(x, w)


@tf.autograph.experimental.do_not_convert
def transposed_conv(y, w):
    @tf.custom_gradient
    def op(y, w):
        def gradient(g):
            return tf.nn.conv2d(g, w, 2, "SAME"), conv_kernel_gradient(g, y, w.shape[0])
        return deconv_by_phases(y, w), gradient
    return op(y, w)


class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D(filters, k, strides=2, padding="same"), fast on small maps."""

    def convolution_op(self, inputs, kernel):
        size = inputs.shape[1]
        if ON_CPU and size % 2 == 0 and size // 2 <= SMALL:
            return strided_conv(inputs, tf.convert_to_tensor(kernel))
        return super().convolution_op(inputs, kernel)


class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose(filters, k, strides=2, padding="same"), fast on small maps."""

    def call(self, inputs):
        if ON_CPU and inputs.shape[1] <= SMALL:
            return transposed_conv(inputs, tf.convert_to_tensor(self.kernel)) + self.bias
        return super().call(inputs)
