import cli  # noqa: F401 (first: TensorFlow's environment, as the commands set it)

import keras
import numpy as np
import pytest
import tensorflow as tf

# Two logical CPUs, so that tf.distribute can be tested with two replicas on this machine. Must
# happen before TensorFlow starts; the default strategy still uses one device.
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)

from model import Discriminator, Generator
from ops import batch_norm
from solver import Solver

# Tiny networks: the properties tested here do not depend on the size.
TINY = dict(image_size=16, channels=3, kernel_size=5)


def tiny_models(gf_dim=8, df_dim=8, seed=0, **arch):
    keras.utils.set_random_seed(seed)
    arch = {**TINY, **arch}
    generator = Generator(arch["image_size"], arch["channels"], z_dim=16, gf_dim=gf_dim,
                          kernel_size=arch["kernel_size"])
    discriminator = Discriminator(arch["image_size"], arch["channels"], df_dim=df_dim,
                                  kernel_size=arch["kernel_size"])
    return generator, discriminator


@pytest.fixture
def solver():
    return Solver(*tiny_models(), seed=0)


@pytest.fixture
def real_batch():
    return tf.random.stateless_uniform((8, 16, 16, 3), seed=(1, 2), minval=-1.0, maxval=1.0)


def snapshot(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


NETWORKS = ("generator", "discriminator")


def train(solver, batches, steps=3):
    iterator = iter(batches)
    return [{k: float(v) for k, v in solver.train_step(next(iterator)).items()}
            for _ in range(steps)]


def biases_before_batch_norm(network):
    """The batch norm subtracts these biases, so their true gradient is zero and what they get
    is float noise, which Adam scales up to learning-rate-sized steps in any direction."""
    layers = network.net.layers
    return {layer.bias.path for layer, after in zip(layers, layers[1:])
            if isinstance(after, batch_norm) and getattr(layer, "bias", None) is not None}


def assert_same_training(reference, other, batches, other_batches, rtol, atol):
    """Same losses at every step, and the same weights and batch norm statistics after."""
    start = {n: snapshot(getattr(reference, n).variables) for n in NETWORKS}
    for n in NETWORKS:
        for a, b in zip(start[n], snapshot(getattr(other, n).variables)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(train(reference, batches), train(other, other_batches)):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=rtol)
    for n in NETWORKS:
        noise = biases_before_batch_norm(getattr(reference, n))
        assert noise  # one per network at this size
        for a, b, initial in zip(getattr(reference, n).variables, getattr(other, n).variables,
                                 start[n]):
            if a.path in noise:  # where they went is noise: they must only stay near the start
                assert max(np.abs(a - initial).max(), np.abs(b - initial).max()) < 1e-4
            else:
                np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=a.path)
