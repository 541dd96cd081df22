import keras
import numpy as np
import pytest
import tensorflow as tf

import config
from ops import batch_norm, conv2d, deconv2d, initializer, linear, lrelu


def test_lrelu_has_leak_0_2():
    np.testing.assert_allclose(lrelu(tf.constant([-5.0, -1.0, 0.0, 3.0])), [-1.0, -0.2, 0.0, 3.0])


def test_conv2d_halves_and_deconv2d_doubles():
    x = tf.zeros((2, 16, 16, 3))
    assert conv2d(10)(x).shape == (2, 8, 8, 10)
    assert deconv2d(7, kernel_size=4)(x).shape == (2, 32, 32, 7)
    layer = conv2d(10, kernel_size=3)
    layer(x)
    assert layer.kernel.shape == (3, 3, 3, 10)


def test_batch_norm_defaults_are_the_originals_and_configurable():
    bn = batch_norm()
    assert (bn.momentum, bn.epsilon) == (0.99, 1e-3) == (config.BN_DECAY, config.BN_EPSILON)
    bn = batch_norm(decay=0.9, epsilon=1e-5)
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)


def test_batch_norm_is_one_object_whose_state_persists_across_calls():
    bn = batch_norm(decay=0.9)
    x = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, (32, 4)), tf.float32)
    bn(x, training=True)
    variables = list(bn.weights)
    assert sorted(v.name for v in variables) == ["beta", "gamma", "moving_mean", "moving_variance"]
    # Training mode moves the averages: moving = decay * moving + (1 - decay) * batch.
    np.testing.assert_allclose(bn.moving_mean, 0.1 * np.mean(x, axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance, 0.9 + 0.1 * np.var(x, axis=0), rtol=1e-5)
    bn(x * 5, training=True)
    assert [id(v) for v in bn.weights] == [id(v) for v in variables]  # no new variables


def test_batch_norm_inference_uses_the_moving_statistics():
    bn = batch_norm(epsilon=1e-3)
    x = tf.constant(np.random.default_rng(1).normal(1.0, 3.0, (16, 3)), tf.float32)
    bn(x, training=True)
    bn.gamma.assign([2.0, 0.5, 1.0])
    bn.beta.assign([0.1, 0.2, 0.3])
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    expected = np.array([2.0, 0.5, 1.0]) * (x - mean) / np.sqrt(var + 1e-3) + [0.1, 0.2, 0.3]
    np.testing.assert_allclose(bn(x, training=False), expected, rtol=1e-4, atol=1e-5)
    before = bn.moving_mean.numpy().copy()
    bn(x, training=False)
    np.testing.assert_array_equal(bn.moving_mean, before)  # inference never updates them


def test_initializers_original_glorot_and_paper_normal():
    keras.utils.set_random_seed(0)
    normal = linear(1000, init="normal")
    normal(tf.zeros((1, 200)))
    assert abs(float(np.std(normal.kernel)) - 0.02) < 5e-4
    assert not np.any(normal.bias)
    glorot = linear(1000, init="glorot")
    glorot(tf.zeros((1, 200)))
    limit = np.sqrt(6 / (200 + 1000))
    assert np.abs(glorot.kernel).max() <= limit and np.abs(glorot.kernel).max() > 0.95 * limit
    with pytest.raises(config.ConfigError, match="--init"):
        initializer("uniform")
