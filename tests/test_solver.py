import re

import numpy as np
import pytest
import tensorflow as tf

import augment
import config
from conftest import assert_same_steps, checkpoints, snapshot, tiny_models
from model import layers_of, to_pixels
from ops import SpectralNorm, batch_norm
from solver import Solver, cross_entropy
from training import loop
from utils.files import image_grid


def assert_same(before, variables):
    for old, new in zip(before, variables):
        np.testing.assert_array_equal(old, new.numpy())


def assert_all_changed(before, variables):
    for old, new in zip(before, variables):
        assert not np.array_equal(old, new.numpy()), new.path


def test_d_update_leaves_every_generator_weight_bit_identical(solver, real_batch):
    g_before = snapshot(solver.generator.trainable_variables)
    d_before = snapshot(solver.discriminator.trainable_variables)
    solver.d_step(real_batch, solver.generator(solver.sample_z(8, 0), training=True))
    assert_same(g_before, solver.generator.trainable_variables)
    assert_all_changed(d_before, solver.discriminator.trainable_variables)


def test_g_update_leaves_every_discriminator_weight_bit_identical(solver):
    g_before = snapshot(solver.generator.trainable_variables)
    d_before = snapshot(solver.discriminator.trainable_variables)
    solver.g_step(solver.sample_z(8, 0))
    assert_same(d_before, solver.discriminator.trainable_variables)
    assert_all_changed(g_before, solver.generator.trainable_variables)


def test_solver_refuses_fewer_than_one_g_update():
    with pytest.raises(config.ConfigError, match="g_steps: must be 1 or more, not 0"):
        Solver(*tiny_models(), g_steps=0)


@pytest.mark.parametrize("g_steps", [1, 2, 3])
def test_train_step_is_one_d_update_then_g_steps_g_updates(real_batch, g_steps):
    solver = Solver(*tiny_models(), g_steps=g_steps)
    solver.train_step(real_batch)
    solver.train_step(real_batch)
    assert int(solver.d_optimizer.iterations) == 2
    assert int(solver.g_optimizer.iterations) == 2 * g_steps
    assert int(solver.step) == 2


LEVERS = {"augmented": {"policy": augment.POLICIES},
          "adaptive": {"policy": ("translation", "cutout"), "ada_target": 0.6},
          "hinge": {"loss": "hinge"}, "TTUR": {"d_lr": 2e-4, "g_lr": 1e-4},
          "spectral norm": {"spectral_norm": True}}


def lever_solver(seed=0, spectral_norm=False, **options):
    """A Solver of the tiny networks with the levers for few images (LEVERS) asked for."""
    return Solver(*tiny_models(seed=seed, spectral_norm=spectral_norm), **options)


@pytest.mark.parametrize("g_steps, levers", [(1, {}), (2, {}), *[(2, v) for v in LEVERS.values()]],
                         ids=["1", "2", *LEVERS])
def test_the_fast_step_computes_the_originals_step(real_batch, g_steps, levers):
    """Same losses, weights and batch norm statistics (moved once per G forward pass of the
    original) as the original's step, which runs G forward again for the first G update; and
    so with each lever for few images, augmenting each image D sees the same way."""
    original = lever_solver(g_steps=g_steps, **levers)
    fast = lever_solver(g_steps=g_steps, **levers)
    for solver in (original, fast):
        solver.augment_p.assign(0.5 if "ada_target" in levers else 1.0)
    assert_same_steps(original, original.original_step, fast, fast.fast_step, [real_batch] * 3)


def test_d_sees_augmented_images_in_both_updates_and_g_gets_their_gradient(real_batch):
    """The augmentation changes what D judges in its own update and in G's, and G, trained
    through it, learns something else than without."""
    plain, augmented = Solver(*tiny_models(seed=0)), Solver(*tiny_models(seed=0),
                                                            policy=("cutout",))
    a, b = plain.train_step(real_batch), augmented.train_step(real_batch)
    for name in ("d_loss_real", "d_loss_fake", "g_loss"):
        assert float(a[name]) != float(b[name]), name
    assert float(b["augment_p"]) == 1.0 and "augment_p" not in a
    for x, y in zip(plain.generator.trainable_variables, augmented.generator.trainable_variables):
        assert not np.array_equal(x, y), x.path


@pytest.mark.parametrize("ada_kimg", [None, 2])
def test_ada_moves_p_after_each_step_by_the_images_over_its_speed(real_batch, ada_kimg):
    """After a step p has moved by the step's real images over ada_kimg thousand (ADA's 500 by
    default), up if the step's r_t was above the target, down if below."""
    solver = lever_solver(policy=("translation",), ada_target=0.6, ada_kimg=ada_kimg)
    solver.augment_p.assign(0.5)
    metrics = solver.train_step(real_batch)
    moved = float(solver.augment_p) - 0.5
    assert float(metrics["augment_p"]) == 0.5  # the step itself used p as it was
    assert np.sign(moved) == np.sign(float(metrics["r_t"]) - 0.6) != 0
    # p is float32: a move of 8 / 500,000 from 0.5 is good to about 0.4%.
    np.testing.assert_allclose(abs(moved), len(real_batch) / ((ada_kimg or 500) * 1000),
                               rtol=1e-2)


def test_each_network_takes_its_own_learning_rate():
    """TTUR: D's update is the one of a run with D's rate (it comes first), and Adam's first
    step moves each weight by about its network's rate."""
    batch = tf.random.stateless_uniform((8, 16, 16, 3), seed=(1, 2), minval=-1.0, maxval=1.0)
    ttur = Solver(*tiny_models(seed=0), d_lr=1e-3, g_lr=1e-5, g_steps=1)
    same = Solver(*tiny_models(seed=0), lr=1e-3, g_steps=1)
    start = {n: snapshot(getattr(ttur, n).trainable_variables) for n in ("generator",
                                                                          "discriminator")}
    ttur.train_step(batch), same.train_step(batch)
    assert_same(snapshot(same.discriminator.trainable_variables),
                ttur.discriminator.trainable_variables)
    for name, lr in (("generator", 1e-5), ("discriminator", 1e-3)):
        moved = max(np.abs(v.numpy() - s).max()
                    for v, s in zip(getattr(ttur, name).trainable_variables, start[name]))
        assert 0.9 * lr < moved < 1.01 * lr, name


def test_the_hinge_loss_is_mirrored_margins_for_d_and_the_raw_logit_for_g():
    solver = Solver(*tiny_models(), loss="hinge")
    real, fake = tf.constant([-2.0, 0.5, 3.0]), tf.constant([-3.0, -0.5, 2.0])
    d_real, d_fake = solver.discriminator_loss(real, fake)
    np.testing.assert_allclose([float(d_real), float(d_fake), float(solver.generator_loss(fake))],
                               [np.mean([3.0, 0.5, 0.0]), np.mean([0.0, 0.5, 3.0]),
                                -np.mean([-3.0, -0.5, 2.0])], rtol=1e-6)


@pytest.mark.parametrize("settings, says", [
    ({"loss": "hinge", "label_smoothing": 0.1}, "label_smoothing: has no meaning under the hinge"),
    ({"loss": "wasserstein"}, "loss: must be one of cross_entropy, hinge"),
    ({"ada_target": 0.6}, "ada_target: adapts how often the augmentations are applied"),
    ({"policy": ("cutout",), "ada_target": 1.5}, "ada_target: must be in (0, 1)"),
    ({"policy": ("cutout",), "ada_kimg": 100}, "ada_kimg: sets how fast ADA adapts"),
    ({"policy": ("cutout",), "ada_target": 0.6, "ada_kimg": 0}, "ada_kimg: must be above 0"),
])
def test_settings_that_do_not_go_together_are_refused(settings, says):
    with pytest.raises(config.ConfigError, match=re.escape(says)):
        Solver(*tiny_models(), **settings)


def test_spectral_norm_keeps_each_layer_of_d_at_norm_1_and_is_checkpointed(real_batch, tmp_path):
    """After training steps, each normalised kernel's largest singular value is 1 (the power
    iteration has converged on the weights that move slowly), and u is in the checkpoint."""
    solver = lever_solver(spectral_norm=True)
    assert not layers_of(solver.discriminator, batch_norm)
    for _ in range(20):
        solver.train_step(real_batch)
    normalised = layers_of(solver.discriminator, SpectralNorm)
    assert len(normalised) == 3  # two convolutions and the logit's dense layer
    for layer in normalised:
        kernel = layer.normalised_kernel(training=False).numpy()
        top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert abs(top - 1) < 0.02, layer.name
    path = checkpoints(solver, tmp_path).save()
    assert sum(name.startswith("discriminator/") and "/u/" in name
               for name, _ in tf.train.list_variables(path)) == 3


def test_watching_d_on_held_out_images_changes_nothing(solver, real_batch):
    solver.train_step(real_batch)
    before = snapshot(solver.discriminator.variables)
    r_t, d_x = (float(v) for v in solver.held_out(real_batch[:4] * 0.5))
    assert -1 <= r_t <= 1 and 0 < d_x < 1
    assert_same(before, solver.discriminator.variables)


def test_the_fast_step_runs_the_generator_forward_once_less(real_batch):
    """What makes it fast: the original's step calls G twice for a D and a G update, it once."""
    calls = []
    for step in ("original_step", "fast_step"):
        solver = Solver(*tiny_models(seed=0), g_steps=1)
        forward = solver.generator.call
        solver.generator.call = lambda *args, **kwargs: calls.append(step) or forward(*args, **kwargs)
        getattr(solver, step)(real_batch, solver.sample_z(8, 0))
    assert calls.count("original_step") == 2 and calls.count("fast_step") == 1


def test_two_adam_optimizers_with_the_originals_settings(solver):
    for optimizer in (solver.d_optimizer, solver.g_optimizer):
        assert np.isclose(float(optimizer.learning_rate), 2e-4) and optimizer.beta_1 == 0.5
    assert solver.d_optimizer is not solver.g_optimizer
    d_slots = {v.path for v in solver.d_optimizer.variables}
    g_slots = {v.path for v in solver.g_optimizer.variables}
    assert not any("generator" in p for p in d_slots) and not any("discriminator" in p for p in g_slots)


def targets_received(solver):
    """Recover the targets from the gradient: d CE(t, x) / dx = sigmoid(x) - t = 0.5 - t at x=0."""
    logits = [tf.Variable(tf.zeros(4)) for _ in range(3)]
    with tf.GradientTape() as tape:
        d_loss_real, d_loss_fake = solver.discriminator_loss(logits[0], logits[1])
        g_loss = solver.generator_loss(logits[2])
    grads = tape.gradient([d_loss_real, d_loss_fake, g_loss], logits)
    return [float(0.5 - 4 * g[0]) for g in grads]


@pytest.mark.parametrize("smoothing, two_sided, expected", [
    (0.0, False, (1.0, 0.0, 1.0)),  # the original
    (0.1, False, (0.9, 0.0, 1.0)),  # one-sided
    (0.1, True, (0.9, 0.1, 1.0)),   # two-sided: real 0.9, fake 0.1
    (0.2, True, (0.8, 0.2, 1.0)),
])
def test_label_smoothing_targets_the_loss_receives(smoothing, two_sided, expected):
    solver = Solver(*tiny_models(), label_smoothing=smoothing, two_sided_smoothing=two_sided)
    np.testing.assert_allclose(targets_received(solver), expected, atol=1e-6)


def test_cross_entropy_is_the_sigmoid_cross_entropy():
    logits = np.array([-2.0, 0.5, 3.0], np.float32)
    p = 1 / (1 + np.exp(-logits))
    expected = np.mean(-0.9 * np.log(p) - 0.1 * np.log(1 - p))
    np.testing.assert_allclose(np.mean(cross_entropy(0.9, tf.constant(logits))), expected, rtol=1e-5)


def test_train_step_reports_all_metrics(solver, real_batch):
    metrics = {k: float(v) for k, v in solver.train_step(real_batch).items()}
    assert set(metrics) == {"d_loss", "d_loss_real", "d_loss_fake", "g_loss", "D(x)", "D(G(z))",
                            "r_t"}
    assert -1 <= metrics["r_t"] <= 1
    assert np.isclose(metrics["d_loss"], metrics["d_loss_real"] + metrics["d_loss_fake"])
    assert 0 < metrics["D(x)"] < 1 and 0 < metrics["D(G(z))"] < 1


@pytest.mark.parametrize("cols, expected_cols", [(None, 4), (3, 3)])
def test_image_grid_places_image_i_at_row_i_div_cols(cols, expected_cols):
    n = 10  # by default 10 images -> 4 columns, 3 rows, 2 black cells
    images = np.stack([np.full((2, 3, 1), 20 * i, np.uint8) for i in range(1, n + 1)])
    grid = image_grid(images, cols)
    rows = -(-n // expected_cols)
    assert grid.shape == (rows * 2, expected_cols * 3, 1) and grid.dtype == np.uint8
    for i in range(n):
        r, c = divmod(i, expected_cols)
        assert np.all(grid[r * 2:(r + 1) * 2, c * 3:(c + 1) * 3] == 20 * (i + 1))
    r, c = divmod(n, expected_cols)
    assert np.all(grid[r * 2:, c * 3:] == 0)


def test_to_pixels_maps_the_tanh_range_onto_uint8():
    images = tf.constant([-2.0, -1.0, 0.0, 1.0, 3.0])  # 0.0 -> 127.5, rounded half to even
    np.testing.assert_array_equal(to_pixels(images), [0, 0, 128, 255, 255])


def test_train_step_is_traced_once(solver, real_batch):
    for _ in range(3):
        solver.train_step(real_batch)
    assert solver.train_step.experimental_get_tracing_count() == 1


# --- the moving average of the generator (--ema_decay) -------------------------------------------
def test_the_average_moves_each_generator_variable_by_the_decay_and_trains_nothing(real_batch):
    solver = Solver(*tiny_models(), ema_decay=0.75)
    assert_same(snapshot(solver.generator.variables), solver.generator_ema.variables)  # starts equal
    # The decay, but at most (1 + t) / (10 + t) at step t: 0.1 and 0.18, then 0.75 from step 26.
    for step, decay in [(0, 0.1), (1, 2 / 11), (30, 0.75)]:
        solver.step.assign(step)
        average = snapshot(solver.generator_ema.variables)
        solver.train_step(real_batch)
        trained = snapshot(solver.generator.variables)
        # Weights and batch norm statistics alike.
        for old, new, now in zip(average, trained, solver.generator_ema.variables):
            np.testing.assert_allclose(now.numpy(), decay * old + (1 - decay) * new, rtol=1e-5,
                                       atol=1e-6)
    assert not np.array_equal(trained[0], solver.generator_ema.variables[0].numpy())
    # The sampler's images are the average's.
    z = solver.sample_z(4, 0)
    np.testing.assert_array_equal(solver.sampler.sample(z), solver.generator_ema.sample(z))


# --- a conditional run ----------------------------------------------------------------------------
CLASSES = dict(labels="classes", label_names=("a", "b", "c"))


def test_a_conditional_step_is_the_originals_step_and_trains_each_network_alone(real_batch):
    """(images, labels) batches: the fast step equals the original's, as unconditioned; a D
    update leaves G as it was and a G update leaves D."""
    y = tf.one_hot(tf.constant([0, 1, 2, 0, 1, 2, 0, 1]), 3)
    original, fast = Solver(*tiny_models(seed=0, **CLASSES)), Solver(*tiny_models(seed=0, **CLASSES))
    assert_same_steps(original, lambda real, z: original.original_step(real, z, y),
                      fast, lambda real, z: fast.fast_step(real, z, y), [real_batch] * 3)
    solver = Solver(*tiny_models(**CLASSES))
    g_before = snapshot(solver.generator.trainable_variables)
    solver.d_step(real_batch, solver.generator(solver.sample_z(8, 0), y, training=True), y)
    assert_same(g_before, solver.generator.trainable_variables)
    d_before = snapshot(solver.discriminator.trainable_variables)
    solver.g_step(solver.sample_z(8, 0), y=y)
    assert_same(d_before, solver.discriminator.trainable_variables)


def test_a_conditional_sample_grid_has_a_row_per_class_on_the_same_z():
    solver = Solver(*tiny_models(**CLASSES))
    z, y = loop.grid_inputs(solver)
    assert z.shape == (3 * 8, 16) and y.shape == (3 * 8, 3)
    for row in range(3):
        np.testing.assert_array_equal(z[8 * row:8 * row + 8], solver.fixed_z[:8])
        np.testing.assert_array_equal(np.argmax(y[8 * row:8 * row + 8], axis=1), row)
