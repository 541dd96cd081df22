"""What a checkpoint holds, and that a run restored from one goes on as the run that saved it."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import config
from conftest import checkpoint_value, checkpoints, snapshot, tiny_models
from solver import Solver
from training import checkpoint


def assert_same(before, variables):
    for old, new in zip(before, variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_resume_restores_everything_and_continues_identically(tmp_path, real_batch):
    first = Solver(*tiny_models(seed=0), seed=0)
    assert checkpoints(first, tmp_path).restore() is None
    for _ in range(3):
        first.train_step(real_batch)
    checkpoints(first, tmp_path).save()

    # Other weights, z and fixed z until restored; and another learning rate, which stays.
    second = Solver(*tiny_models(seed=1), seed=1, lr=1e-3)
    assert checkpoints(second, tmp_path).restore().endswith("ckpt-3")
    assert int(second.step) == 3
    for a, b in [(first.generator, second.generator), (first.discriminator, second.discriminator)]:
        assert_same(snapshot(a.variables), b.variables)  # weights, BN statistics
    for a, b in [(first.g_optimizer, second.g_optimizer), (first.d_optimizer, second.d_optimizer)]:
        state = lambda optimizer: [v for v in optimizer.variables if "learning_rate" not in v.path]
        assert len(state(a)) == len(a.variables) - 1
        assert_same(snapshot(state(a)), state(b))  # Adam's moments and count are the first run's
        assert np.isclose(float(b.learning_rate), 1e-3)
    np.testing.assert_array_equal(first.fixed_z, second.fixed_z)
    # z depends on (seed, step) only, and the seed comes back too: the next step is the same.
    third = Solver(*tiny_models(seed=1), seed=1)
    checkpoints(third, tmp_path).restore()
    a, b = first.train_step(real_batch), third.train_step(real_batch)
    assert float(a["g_loss"]) == float(b["g_loss"])
    assert_same(snapshot(first.generator.variables), third.generator.variables)


def test_checkpoint_of_another_architecture_is_refused_before_any_write(tmp_path):
    checkpoints(Solver(*tiny_models(gf_dim=8)), tmp_path).save()
    files = sorted(os.listdir(tmp_path / "checkpoints"))
    other = checkpoints(Solver(*tiny_models(gf_dim=16, kernel_size=4)), tmp_path)
    with pytest.raises(config.ConfigError) as error:
        other.restore()
    assert error.value.setting == "out_dir"
    assert "gf_dim=8, kernel_size=5" in error.value.message
    assert "gf_dim=16, kernel_size=4" in error.value.message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == files


def test_the_run_directory_is_created_by_the_first_save(tmp_path, real_batch):
    out_dir = tmp_path / "run"
    solver = Solver(*tiny_models())
    saved = checkpoints(solver, out_dir)
    assert saved.restore() is None and not out_dir.exists()
    solver.train_step(real_batch)
    assert saved.save().endswith("ckpt-1") and out_dir.exists()


def test_a_checkpoint_records_the_architecture_and_the_step(tmp_path, real_batch):
    solver = Solver(*tiny_models())
    solver.train_step(real_batch)
    path = checkpoints(solver, tmp_path).save()
    saved = json.loads(tf.train.load_checkpoint(path).get_tensor(checkpoint.value("arch")))
    assert saved == dict(image_size=16, channels=3, z_dim=16, gf_dim=8, df_dim=8, kernel_size=5)
    assert checkpoint.read_record(path) == (solver.generator.arch, 1) and checkpoint.step_of(path) == 1


def test_a_run_without_the_average_has_the_checkpoint_it_had(tmp_path):
    path = checkpoints(Solver(*tiny_models()), tmp_path).save()
    assert {name.split("/")[0] for name, _ in tf.train.list_variables(path)} == {
        "_CHECKPOINTABLE_OBJECT_GRAPH", "arch", "d_optimizer", "discriminator", "fixed_z",
        "g_optimizer", "generator", "save_counter", "seed", "step"}
    assert not checkpoint.has_ema(path)


def test_the_average_is_checkpointed_and_a_resume_without_it_is_refused(tmp_path, real_batch):
    first = Solver(*tiny_models(seed=0), ema_decay=0.5)
    for _ in range(2):
        first.train_step(real_batch)
    assert checkpoint.has_ema(checkpoints(first, tmp_path).save())
    second = Solver(*tiny_models(seed=1), ema_decay=0.5)
    checkpoints(second, tmp_path).restore()
    assert_same(snapshot(first.generator_ema.variables), second.generator_ema.variables)
    with pytest.raises(config.ConfigError, match="made with a moving average of the generator: "
                                                 "resume it the same"):
        checkpoints(Solver(*tiny_models()), tmp_path).restore()
    plain = tmp_path / "plain"
    checkpoints(Solver(*tiny_models()), plain).save()
    with pytest.raises(config.ConfigError, match="made without a moving average"):
        checkpoints(Solver(*tiny_models(), ema_decay=0.5), plain).restore()


def test_the_best_checkpoint_is_kept_apart_and_listed_with_the_others(tmp_path, real_batch):
    solver = Solver(*tiny_models())
    saved = checkpoints(solver, tmp_path)
    for _ in range(2):
        solver.train_step(real_batch)
        saved.save()
    assert checkpoint.best(saved.run_dir) is None
    best = saved.keep_best()  # as the scores of step 2 would
    solver.train_step(real_batch)
    assert checkpoint.best(saved.run_dir) == best and checkpoint.step_of(best) == 2
    assert [checkpoint.step_of(p) for p in checkpoint.kept(saved.run_dir)] == [1, 2]
    saved.save()
    assert [os.path.basename(p) for p in checkpoint.kept(saved.run_dir)] == ["ckpt-1", "ckpt-2",
                                                                             "ckpt-3"]


def test_adas_p_is_checkpointed_and_a_run_that_turns_ada_on_starts_it_at_0(tmp_path):
    ada = dict(policy=("translation",), ada_target=0.6)
    first = Solver(*tiny_models(seed=0), **ada)
    first.augment_p.assign(0.25)
    path = checkpoints(first, tmp_path / "ada").save()
    assert checkpoint_value(path, "augment_p") == np.float32(0.25)
    resumed = Solver(*tiny_models(seed=0), **ada)
    checkpoints(resumed, tmp_path / "ada").restore()
    assert float(resumed.augment_p) == 0.25
    # A run without ADA keeps the checkpoint it had; resumed with ADA, p starts at 0 and is saved.
    plain = Solver(*tiny_models(seed=0))
    path = checkpoints(plain, tmp_path / "plain").save()
    assert "augment_p" not in {n.split("/")[0] for n, _ in tf.train.list_variables(path)}
    turned_on = Solver(*tiny_models(seed=0), **ada)
    kept = checkpoints(turned_on, tmp_path / "plain")
    assert kept.restore() == path and float(turned_on.augment_p) == 0.0
    turned_on.augment_p.assign(0.5)
    assert checkpoint_value(kept.save(), "augment_p") == np.float32(0.5)
