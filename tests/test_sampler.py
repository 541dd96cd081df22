"""The seminar's quiz: the sampler must use batch norm's moving statistics (inference mode)."""
import numpy as np
import tensorflow as tf

from conftest import snapshot
from model import layers_of
from ops import batch_norm


def generator_bns(generator):
    return layers_of(generator, batch_norm)


def train_a_few_steps(solver, real_batch, steps=3):
    for _ in range(steps):
        solver.train_step(real_batch)


def test_moving_statistics_move_during_training(solver, real_batch):
    for bn in generator_bns(solver.generator):
        np.testing.assert_array_equal(bn.moving_mean, 0.0)
        np.testing.assert_array_equal(bn.moving_variance, 1.0)
    train_a_few_steps(solver, real_batch)
    for bn in generator_bns(solver.generator):
        assert np.all(bn.moving_mean.numpy() != 0.0)
        assert np.all(bn.moving_variance.numpy() != 1.0)


def test_a_sample_depends_only_on_its_own_z(solver, real_batch):
    train_a_few_steps(solver, real_batch)
    z = solver.sample_z(64, 0)
    batch = solver.generator.sample(z).numpy()
    for i in range(64):
        np.testing.assert_allclose(solver.generator.sample(z[i:i + 1])[0], batch[i], atol=1e-5)
    # Same z among different neighbours: still the same image.
    shuffled = solver.generator.sample(tf.reverse(z, [0])).numpy()[::-1]
    np.testing.assert_allclose(shuffled, batch, atol=1e-5)


def test_training_mode_output_depends_on_the_batch(solver, real_batch):
    train_a_few_steps(solver, real_batch)
    z = solver.sample_z(64, 0)
    alone = solver.generator(z[:8], training=True)[0]
    in_batch = solver.generator(z, training=True)[0]
    assert float(tf.reduce_max(tf.abs(alone - in_batch))) > 1e-3


def test_sampling_leaves_every_generator_variable_untouched(solver, real_batch):
    train_a_few_steps(solver, real_batch)
    before = snapshot(solver.generator.variables)
    solver.generator.sample(solver.sample_z(64, 0))
    for old, new in zip(before, solver.generator.variables):
        np.testing.assert_array_equal(old, new.numpy())
