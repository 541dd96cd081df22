import json

import keras
import pytest
import tensorflow as tf

import config
from model import (Architecture, Discriminator, Generator, count_params, label_vector, layer_plan,
                   layers_of)
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


# --- conditional networks -----------------------------------------------------------------------
DIGITS = Architecture(28, 1, z_dim=10, gf_dim=8, df_dim=8, labels="classes",
                      label_names=[str(d) for d in range(10)])


def test_the_conditional_networks_depend_on_y_and_on_nothing_else_of_the_batch():
    generator, discriminator = Generator(DIGITS), Discriminator(DIGITS)
    z = tf.random.stateless_uniform((4, 10), seed=(1, 2), minval=-1, maxval=1)
    threes, sevens = label_vector(DIGITS, [3] * 4), label_vector(DIGITS, [7] * 4)
    images = generator.sample(z, threes)
    assert images.shape == (4, 28, 28, 1)
    assert float(tf.reduce_max(tf.abs(images - generator.sample(z, sevens)))) > 1e-3
    logits = discriminator(images, threes, training=True)
    assert float(tf.reduce_max(tf.abs(logits - discriminator(images, sevens, training=True)))) > 1e-4
    # The sampler's image of (z, y) is its own, whatever else is in the batch.
    mixed = label_vector(DIGITS, [3, 7, 3, 7])
    tf.debugging.assert_near(generator.sample(z, mixed)[0], images[0], atol=1e-6)


def test_y_joins_the_input_of_every_weight_layer():
    """Each layer with weights has y_dim more inputs than the unconditional one: 10 rows more
    in each kernel's input axis, and the layers themselves the same."""
    plain = Architecture(28, 1, z_dim=10, gf_dim=8, df_dim=8)
    for kind in (Generator, Discriminator):
        conditional, unconditional = kind(DIGITS), kind(plain)
        shapes = [[v.shape for v in net.trainable_variables if v.path.endswith("kernel")]
                  for net in (conditional, unconditional)]
        assert len(shapes[0]) == len(shapes[1])
        for with_y, without in zip(*shapes):
            if len(with_y) == 2:  # Dense: [inputs, units]
                assert with_y == (without[0] + 10, without[1])
            else:  # a convolution's input channels (Conv2DTranspose keeps them last)
                axis = 3 if kind is Generator else 2
                assert with_y[axis] == without[axis] + 10


def test_the_record_of_a_conditional_architecture_holds_its_labels():
    text = DIGITS.to_json()
    assert json.loads(text)["labels"] == "classes" and len(json.loads(text)["label_names"]) == 10
    assert Architecture.from_json(text) == DIGITS
    attributes = Architecture(64, 3, labels="attributes", label_names=("Smiling", "Male"))
    y = label_vector(attributes, [[1, 0], [0, 1]])
    assert y.dtype == tf.float32 and y.shape == (2, 2)
    assert label_vector(DIGITS, [2]).numpy().tolist() == [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]
