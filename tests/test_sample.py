"""sample.py and export.py from the command line, on a tiny trained run."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import config
import sample
from conftest import checkpoints, error_line, run_command, tiny_models
from model import draw_z, to_pixels
from sample import lerp, slerp
from solver import Solver
from training.checkpoint import load_generator
from training.run_dir import RunDir

SIZE = 16  # tiny_models' images


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as train.py leaves it, a few steps in, so batch norm's moving statistics
    are not their initial values."""
    out = str(tmp_path_factory.mktemp("run"))
    solver = Solver(*tiny_models(), seed=0)
    real = tf.random.stateless_uniform((8, SIZE, SIZE, 3), seed=(1, 2), minval=-1, maxval=1)
    for _ in range(3):
        solver.train_step(real)
    checkpoints(solver, out).save()
    return out


def sample_cli(run_dir, *args):
    result = run_command("sample.py", f"--out_dir={run_dir}", *args)
    assert result.returncode == 0, result.stderr
    return os.path.join(run_dir, "generated")


@pytest.fixture(scope="module")
def generator(run_dir):
    return load_generator(RunDir(run_dir)).generator


@pytest.fixture(scope="module")
def grid9(run_dir, generator):
    """The grid of seed 6, 9 samples, that walks and arithmetic refer to by number."""
    out = os.path.join(run_dir, "generated")
    sample.grid(generator, out, seed=6, num_samples=9)
    return out, tiles(os.path.join(out, "grid_seed6.png"), cols=3)


def tiles(path, cols):
    """The images of a grid PNG, in order."""
    grid = np.array(Image.open(path))
    rows = grid.shape[0] // SIZE
    return grid.reshape(rows, SIZE, cols, SIZE, 3).transpose(0, 2, 1, 3, 4).reshape(-1, SIZE, SIZE, 3)


def test_grid_of_any_size_is_the_sampler_on_the_saved_z(tmp_path, generator):
    sample.grid(generator, str(tmp_path), seed=5, num_samples=10, batch_size=4)
    z = np.load(tmp_path / "grid_seed5.npy")
    assert z.shape == (10, 16) and z.min() >= -1 and z.max() <= 1
    images = tiles(tmp_path / "grid_seed5.png", cols=4)  # 10 -> 4 columns, 3 rows
    np.testing.assert_array_equal(images[:10], to_pixels(generator.sample(z)))
    np.testing.assert_array_equal(images[10:], 0)  # padding


@pytest.mark.slow
def test_the_same_command_writes_the_same_bytes(run_dir):
    def files():
        return {name: open(os.path.join(out, name), "rb").read() for name in os.listdir(out)}
    for mode in ["--mode=grid", "--mode=interpolate"]:
        out = sample_cli(run_dir, mode, "--num_samples=6", "--pairs=2", "--steps=3", "--seed=1")
        first = files()
        assert files() == first
        sample_cli(run_dir, mode, "--num_samples=6", "--pairs=2", "--steps=3", "--seed=1")
        assert files() == first
    assert {"grid_seed1.png", "grid_seed1.npy", "interpolate_slerp_seed1.png",
            "interpolate_slerp_seed1.gif"} <= set(first)


@pytest.mark.parametrize("interpolation", ["slerp", "linear"])
def test_walks_end_on_the_plain_samples_of_their_ends(generator, grid9, interpolation):
    out, plain = grid9
    sample.interpolate(generator, out, seed=6, pairs=3, steps=4, interpolation=interpolation)
    name = os.path.join(out, f"interpolate_{interpolation}_seed6")
    walks = tiles(name + ".png", cols=4).reshape(3, 4, SIZE, SIZE, 3)  # one walk per row
    np.testing.assert_array_equal(walks[:, 0], plain[0:6:2])  # fresh z: the grid's first 6
    np.testing.assert_array_equal(walks[:, -1], plain[1:6:2])
    assert not np.array_equal(walks[:, 1], walks[:, 0])  # it moves
    with Image.open(name + ".gif") as gif:
        assert gif.n_frames == 2 * 4 - 2  # there and back


def test_walks_between_named_samples_of_a_grid(generator, grid9):
    out, plain = grid9
    sample.interpolate(generator, out, seed=6, pairs=None, steps=3, indices=["7", "2"])
    walk = tiles(os.path.join(out, "interpolate_slerp_seed6.png"), cols=3)
    np.testing.assert_array_equal(walk[0], plain[7])
    np.testing.assert_array_equal(walk[2], plain[2])


def test_slerp_keeps_the_norm_and_lerp_cuts_the_corner():
    a, b = np.array([3.0, 0.0], np.float32), np.array([0.0, 3.0], np.float32)
    np.testing.assert_allclose(np.linalg.norm(slerp(a, b, 0.5)), 3.0, rtol=1e-6)
    np.testing.assert_allclose(slerp(a, b, 0.5), [3 / 2 ** 0.5] * 2, rtol=1e-6)
    np.testing.assert_allclose(lerp(a, b, 0.5), [1.5, 1.5])
    for t, end in [(0.0, a), (1.0, b)]:
        np.testing.assert_array_equal(slerp(a, b, t), end)
    np.testing.assert_allclose(slerp(a, 2 * a, 0.5), 1.5 * a)  # parallel: the line


def test_arithmetic_decodes_mean_a_minus_mean_b_plus_mean_c(generator, grid9):
    out, plain = grid9
    sample.arithmetic(generator, out, seed=6, a=["0", "1", "2"], b=["3", "4"], c=["5"])
    z = np.load(os.path.join(out, "grid_seed6.npy"))
    answer = np.load(os.path.join(out, "arithmetic_seed6.npy"))
    expected = z[[0, 1, 2]].mean(0) - z[[3, 4]].mean(0) + z[[5]].mean(0)
    np.testing.assert_allclose(answer[0], expected, rtol=1e-6)
    assert answer.shape == (9, 16) and 0 < np.abs(answer[1:] - answer[0]).max() <= 0.25
    # Rows: a's 3 samples and their mean, b's 2 and mean, c's 1 and mean, result + 8 perturbed.
    rows = tiles(os.path.join(out, "arithmetic_seed6.png"), cols=9).reshape(4, 9, SIZE, SIZE, 3)
    np.testing.assert_array_equal(rows[0, :3], plain[:3])
    np.testing.assert_array_equal(rows[0, 3], to_pixels(generator.sample(z[None, :3].mean(1)))[0])
    np.testing.assert_array_equal(rows[0, 4:], 0)
    np.testing.assert_array_equal(rows[2, 0], plain[5])
    np.testing.assert_array_equal(rows[3], to_pixels(generator.sample(answer)))


@pytest.mark.parametrize("asked, message", [
    (dict(mode="arithmetic", seed=99, a=["0"], b=["1"], c=["2"]), "grid_seed99.npy not found"),
    (dict(mode="arithmetic", seed=6, a=["0"], b=["1"], c=["200"]), "--c 200 is not a sample"),
    (dict(mode="arithmetic", seed=6, a=["0"], b=["x"], c=["2"]), "--b takes sample numbers"),
    (dict(mode="arithmetic", seed=6, a=["0"], b=None, c=None), "needs --a, --b and --c"),
    (dict(mode="interpolate", seed=6, pairs=None, steps=3, indices=["1", "2", "3"]), "pairs"),
])
def test_bad_requests_say_what_to_do(generator, grid9, asked, message):
    mode = getattr(sample, asked["mode"])
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        mode(generator, grid9[0], **{k: v for k, v in asked.items() if k != "mode"})


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--mode=arithmetic", "--seed=6", "--a=0", "--b=1", "--c=200"], "--c 200 is not a sample"),
    (["--mode=interpolate", "--steps=1"], "at least 2"),
    (["--num_samples=0"], "must be a positive number"),
])
def test_bad_requests_are_one_line(run_dir, grid9, args, message):
    assert message in error_line(run_command("sample.py", f"--out_dir={run_dir}", *args),
                                 "sample.py")


@pytest.mark.slow
def test_a_run_without_checkpoint_is_one_line(tmp_path):
    line = error_line(run_command("sample.py", f"--out_dir={tmp_path}"), "sample.py")
    assert f"no checkpoint in {tmp_path}/checkpoints" in line


def test_a_checkpoint_of_another_program_is_refused(tmp_path):
    foreign = tf.train.Checkpoint(generator=tf.Module(), arch=tf.Variable(
        '{"image_size": 16, "channels": 3, "z_dim": 16, "gf_dim": 8, "kernel_size": 5}'),
        step=tf.Variable(0, dtype=tf.int64))
    path = foreign.write(str(tmp_path / "checkpoints" / "ckpt"))
    with pytest.raises(config.ConfigError, match="does not hold this project's generator"):
        load_generator(RunDir(str(tmp_path)), path)


def test_the_generator_is_rebuilt_from_the_architecture_its_checkpoint_records(tmp_path, run_dir):
    """The record is JSON of six fields (as checkpoints have always kept it); one that is not
    is one line."""
    snapshot = load_generator(RunDir(run_dir))
    assert snapshot.step == 3 and snapshot.path.endswith("ckpt-3")
    assert snapshot.generator.arch.to_json() == (
        '{"channels": 3, "df_dim": 8, "gf_dim": 8, "image_size": 16, "kernel_size": 5, '
        '"z_dim": 16}')
    damaged = tf.train.Checkpoint(arch=tf.Variable('{"image_size": 16}'),
                                  step=tf.Variable(0, dtype=tf.int64))
    path = damaged.write(str(tmp_path / "checkpoints" / "ckpt"))
    with pytest.raises(config.ConfigError, match="cannot read checkpoint"):
        load_generator(RunDir(str(tmp_path)), path)


# The SavedModel is loaded by a process that cannot import the project: another working
# directory, and the project's modules looked for and not found.
LOAD_ALONE = """
import sys
import numpy as np
import tensorflow as tf
generator = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
spec = generator.structured_input_signature[1]["z"]
assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 16], spec
images = generator(z=tf.constant(np.load(sys.argv[2])))["images"]
assert images.dtype == tf.uint8, images.dtype
np.save(sys.argv[3], images.numpy())
for name in ("model", "ops", "solver", "config", "sample", "utils"):
    assert name not in sys.modules, name
    try:
        __import__(name)
        raise SystemExit(name + " is importable")
    except ImportError:
        pass
"""


@pytest.mark.slow
def test_export_loads_without_the_project_and_matches_sample_py(run_dir, grid9, tmp_path):
    out, plain = grid9
    export_dir = str(tmp_path / "exported")
    result = run_command("export.py", f"--out_dir={run_dir}", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["exported"]  # no temporary folder left
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    images = str(tmp_path / "images.npy")
    result = subprocess.run([sys.executable, "-c", LOAD_ALONE, export_dir,
                             os.path.join(out, "grid_seed6.npy"), images],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(images), plain)

    line = error_line(run_command("export.py", f"--out_dir={run_dir}",
                                  f"--export_dir={export_dir}"), "export.py")
    assert "already exists" in line


@pytest.mark.slow
def test_a_run_with_an_average_samples_the_average_unless_told_not_to(tmp_path):
    solver = Solver(*tiny_models(), seed=0, ema_decay=0.5)
    real = tf.random.stateless_uniform((8, SIZE, SIZE, 3), seed=(1, 2), minval=-1, maxval=1)
    for _ in range(3):
        solver.train_step(real)
    checkpoints(solver, tmp_path).save()
    z = solver.sample_z(5, 0)
    for ema, network in [(True, solver.generator_ema), (False, solver.generator)]:
        snapshot = load_generator(RunDir(str(tmp_path)), ema=ema)
        assert snapshot.ema == ema
        np.testing.assert_array_equal(snapshot.generator.sample(z), network.sample(z))
    assert not np.array_equal(solver.generator_ema.sample(z), solver.generator.sample(z))
    # The commands say which they use.
    said = {flag: run_command("sample.py", f"--out_dir={tmp_path}", "--num_samples=4", *flag).stdout
            for flag in [(), ("--noema",)]}
    assert "from the moving average of the generator at step 3" in said[()]
    assert "from the generator at step 3" in said[("--noema",)]


def test_the_best_checkpoint_of_a_run_that_never_scored_itself_says_what_to_run(run_dir):
    with pytest.raises(config.ConfigError, match=r"no best checkpoint: .* --eval_every N") as error:
        load_generator(RunDir(run_dir), "best")
    assert error.value.setting == "checkpoint"  # sample.py prints it as --checkpoint: ...


# --- a conditional run ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("conditional"))
    solver = Solver(*tiny_models(labels="classes", label_names=("cat", "dog", "owl")), seed=0)
    real = tf.random.stateless_uniform((6, SIZE, SIZE, 3), seed=(1, 2), minval=-1, maxval=1)
    for _ in range(3):
        solver.train_step((real, tf.constant([0, 1, 2, 0, 1, 2])))
    checkpoints(solver, out).save()
    return out, load_generator(RunDir(out)).generator


def test_a_conditional_grid_has_a_row_per_asked_label_on_the_same_z(conditional_run, tmp_path):
    _, generator = conditional_run
    labels = sample.requested_labels(generator.arch, ["owl", "cat"], None)
    assert labels[0] == ["owl", "cat"]
    written = sample.grid(generator, str(tmp_path), seed=2, num_samples=4, labels=labels)
    assert written[-1] == "(rows: owl; cat)"
    images = tiles(written[0], cols=4)
    z = draw_z(4, 16, 2)
    for row, label in enumerate([2, 0]):
        y = np.eye(3, dtype=np.float32)[[label] * 4]
        np.testing.assert_array_equal(images[4 * row:4 * row + 4], to_pixels(generator.sample(z, y)))
    # Every class by default, and a walk from label to label ends on their plain samples.
    assert sample.requested_labels(generator.arch, None, None)[0] == ["cat", "dog", "owl"]
    walk = sample.interpolate(generator, str(tmp_path), seed=3, pairs=1, steps=5,
                              labels=sample.requested_labels(generator.arch, ["dog", "owl"], None))
    ends = tiles(walk[0], cols=5)[[0, 4]]
    z = draw_z(1, 16, 3)
    for end, label in zip(ends, [1, 2]):
        np.testing.assert_array_equal(end, to_pixels(generator.sample(z, np.eye(3)[[label]]))[0])


@pytest.mark.parametrize("label, attributes, says", [
    (["fox"], None, "--label fox is not a class of this run: choose from cat, dog, owl"),
    (None, ["Smiling=1"], "conditioned on classes, not attributes: use --label with one of cat"),
])
def test_a_label_the_run_does_not_know_names_the_ones_it_does(conditional_run, label, attributes,
                                                              says):
    with pytest.raises(config.ConfigError, match=says):
        sample.requested_labels(conditional_run[1].arch, label, attributes)


def test_labels_for_an_unconditional_run_are_refused(generator):
    with pytest.raises(config.ConfigError, match="this run is not conditional"):
        sample.requested_labels(generator.arch, ["3"], None)


def test_attributes_are_set_by_name_and_the_others_are_zero():
    arch = tiny_models(labels="attributes", label_names=("Smiling", "Male", "Bald"))[0].arch
    names, y = sample.requested_labels(arch, None, ["Bald=1", "Smiling=1", "Male=0"])
    assert y.tolist() == [[1, 0, 1]]
    with pytest.raises(config.ConfigError, match="with names from Smiling, Male, Bald"):
        sample.requested_labels(arch, None, ["Happy=1"])


@pytest.mark.slow
def test_a_conditional_export_takes_y_and_gives_sample_pys_pixels(conditional_run, tmp_path):
    run, generator = conditional_run
    export_dir = str(tmp_path / "exported")
    result = run_command("export.py", f"--out_dir={run}", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr
    assert "and y (int32 [None], the class: 0 to 2 for cat, dog, owl)" in result.stdout
    said = run_command("sample.py", f"--out_dir={run}", "--label=dog,owl", "--seed=4")
    assert said.returncode == 0 and "(rows: dog; owl)" in said.stdout, said.stderr
    from_sample_py = tiles(os.path.join(run, "generated", "grid_seed4_labels.png"), cols=8)
    served = tf.saved_model.load(export_dir).signatures["serving_default"]
    z = np.tile(draw_z(8, 16, 4), (2, 1))
    images = served(z=tf.constant(z), y=tf.constant([1] * 8 + [2] * 8))["images"]
    np.testing.assert_array_equal(images, from_sample_py)
