"""fastconv's layers compute what Keras' Conv2D and Conv2DTranspose compute: outputs, input
gradients and kernel gradients, for both kernel sizes, on the map sizes that take the fast route."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import fastconv


def outputs_and_gradients(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.cos(y))  # any loss whose gradient varies by position
    dx, dkernel, dbias = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return y, dx, dkernel, dbias


def assert_same(fast, reference, x):
    reference.build(x.shape)
    fast.build(x.shape)
    for v, w in zip(fast.weights, reference.weights):
        v.assign(w)
    for a, b in zip(outputs_and_gradients(fast, x), outputs_and_gradients(reference, x)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(tf.reduce_max(tf.abs(b))))


@pytest.mark.parametrize("kernel_size", [4, 5])
@pytest.mark.parametrize("size", [4, 7, 8])
def test_transposed_convolution(kernel_size, size):
    x = tf.random.stateless_normal((3, size, size, 6), seed=(size, kernel_size))
    assert fastconv.ON_CPU and size <= fastconv.SMALL  # the fast route is the one under test
    assert_same(fastconv.Conv2DTranspose(5, kernel_size, strides=2, padding="same"),
                keras.layers.Conv2DTranspose(5, kernel_size, strides=2, padding="same"), x)


@pytest.mark.parametrize("kernel_size", [4, 5])
@pytest.mark.parametrize("size", [8, 14, 16])
def test_strided_convolution(kernel_size, size):
    x = tf.random.stateless_normal((3, size, size, 6), seed=(size, kernel_size))
    assert size // 2 <= fastconv.SMALL
    assert_same(fastconv.Conv2D(5, kernel_size, strides=2, padding="same"),
                keras.layers.Conv2D(5, kernel_size, strides=2, padding="same"), x)


def test_large_maps_keep_tensorflows_kernels():
    layer = fastconv.Conv2DTranspose(4, 5, strides=2, padding="same")
    x = tf.zeros((1, 32, 32, 3))
    graph = tf.function(layer).get_concrete_function(x).graph
    assert "Conv2DBackpropInput" in {op.type for op in graph.get_operations()}
    small = tf.function(layer).get_concrete_function(tf.zeros((1, 4, 4, 3))).graph
    assert "Conv2DBackpropInput" not in {op.type for op in small.get_operations()}
