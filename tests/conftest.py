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
