import json

import keras
import pytest
import tensorflow as tf

import config
from model import Architecture, Discriminator, Generator, count_params, layer_plan, layers_of
from ops import batch_norm


def projection_shape(generator):
    return tuple(layers_of(generator, keras.layers.Reshape)[0].output.shape[1:])


def test_parameter_counts_match_the_original():
    celeba = Architecture(image_size=64, channels=3)
    assert count_params(Generator(celeba)) == 5_135_363
    assert count_params(Discriminator(celeba)) == 4_316_545


def test_celeba_shapes_follow_the_original():
    arch = Architecture(64, 3, gf_dim=8, df_dim=8)
    generator, discriminator = Generator(arch), Discriminator(arch)
    assert projection_shape(generator) == (4, 4, 64)  # 4x4x(8 * gf_dim), 4x4x512 at the default
    assert [l.filters for l in layers_of(generator, keras.layers.Conv2DTranspose)] == [32, 16, 8, 3]
    assert len(layers_of(generator, batch_norm)) == 4  # after the projection and 3 deconvs
    images = generator(tf.random.uniform((3, 100), -1, 1), training=True)
    assert images.shape == (3, 64, 64, 3)
    assert float(tf.reduce_max(tf.abs(images))) <= 1.0  # tanh
    assert discriminator(images, training=True).shape == (3,)  # one logit per image
    assert [c.filters for c in layers_of(discriminator, keras.layers.Conv2D)] == [8, 16, 32, 64]
    assert len(layers_of(discriminator, batch_norm)) == 3  # no batch norm on the input layer


def test_mnist_projects_z_to_7x7():
    arch = Architecture(28, 1, z_dim=10, kernel_size=4)
    generator = Generator(arch)
    assert projection_shape(generator) == (7, 7, 128)
    assert generator(tf.zeros((2, 10))).shape == (2, 28, 28, 1)
    assert Discriminator(arch)(tf.zeros((2, 28, 28, 1))).shape == (2,)


@pytest.mark.parametrize("size, plan", [(64, (4, 4)), (28, (2, 7)), (32, (3, 4)), (128, (5, 4)),
                                        (8, (1, 4))])
def test_layer_plan(size, plan):
    assert layer_plan(size) == plan


@pytest.mark.parametrize("size", [0, 6, 7, 27])
def test_impossible_image_sizes_are_refused(size):
    with pytest.raises(config.ConfigError, match=f"image size {size} cannot"):
        Architecture(size, 3)


def test_paper_init_draws_weights_from_normal_0_02():
    generator = Generator(Architecture(64, 3), init="normal")
    kernel = layers_of(generator, keras.layers.Conv2DTranspose)[0].kernel.numpy()  # 5x5x256x512
    assert abs(kernel.std() - 0.02) < 5e-4 and abs(kernel.mean()) < 5e-4


def test_the_architecture_record_round_trips_and_names_its_differences():
    arch = Architecture(28, 1, gf_dim=8)
    assert Architecture.from_json(arch.to_json()) == arch
    assert json.loads(arch.to_json()) == dict(image_size=28, channels=1, z_dim=100, gf_dim=8,
                                              df_dim=64, kernel_size=5)
    other = Architecture(28, 1, gf_dim=16, kernel_size=4)
    assert arch.differences(other) == ("gf_dim=8, kernel_size=5", "gf_dim=16, kernel_size=4")
    with pytest.raises(TypeError):  # a record of other fields is not this one
        Architecture.from_json('{"image_size": 28, "channels": 1, "width": 3}')
