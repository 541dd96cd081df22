"""train.py end to end, as a user runs it: real event files, PNGs, checkpoints, resume, errors."""
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data
from conftest import ROOT, checkpoint_value, error_line, events, run_command, write_shards
from metrics import features

pytestmark = pytest.mark.slow  # every test here runs train.py in processes of its own
TINY = ["--dataset=fake", "--image_size=16", "--gf_dim=8", "--df_dim=8", "--batch_size=8"]


def train(*args):
    return run_command("train.py", *args)


def test_run_logs_samples_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text("\n".join(TINY + [f"--out_dir={out}", "--log_every=2", "--sample_every=3",
                                          "--checkpoint_every=4"]))
    result = train(f"--flagfile={flagfile}", "--max_steps=6")
    assert result.returncode == 0, result.stderr
    assert "step 6/6" in result.stdout and "img/s" in result.stdout and "left" in result.stdout

    tags = events(out / "logs")
    for tag in ["d_loss", "d_loss_real", "d_loss_fake", "g_loss", "D(x)", "D(G(z))"]:
        assert sorted(tags[tag]) == [2, 4, 6], tag
        assert np.isfinite(tf.make_ndarray(tags[tag][6].tensor))
    assert sorted(tags["samples"]) == [3, 6]
    assert tags["samples"][6].metadata.plugin_data.plugin_name == "images"

    with Image.open(out / "samples" / "step_0000006.png") as png:
        assert png.size == (8 * 16, 8 * 16) and png.mode == "RGB"  # 64 fixed-z samples
    assert sorted(os.listdir(out / "samples")) == ["step_0000003.png", "step_0000006.png"]
    checkpoints = tf.train.get_checkpoint_state(str(out / "checkpoints")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in checkpoints] == ["ckpt-4", "ckpt-6"]
    fixed_z = checkpoint_value(checkpoints[-1], "fixed_z")

    # The same command with a larger --max_steps continues from step 6.
    result = train(f"--flagfile={flagfile}", "--max_steps=8")
    assert result.returncode == 0, result.stderr
    assert "Resuming from" in result.stdout and "at step 6" in result.stdout
    assert "step 8/8" in result.stdout and "step 2/" not in result.stdout
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert latest.endswith("ckpt-8") and checkpoint_value(latest, "step") == 8
    np.testing.assert_array_equal(checkpoint_value(latest, "fixed_z"), fixed_z)
    assert checkpoint_value(latest, "d_optimizer/_iterations") == 8
    assert checkpoint_value(latest, "g_optimizer/_iterations") == 16  # g_steps=2

    # Done already: says so and changes nothing.
    result = train(f"--flagfile={flagfile}", "--max_steps=8")
    assert result.returncode == 0 and "Nothing to do" in result.stdout

    run_flags = json.loads((out / "flags.json").read_text())
    assert run_flags["dataset"] == "fake" and run_flags["gf_dim"] == 8
    assert run_flags["architecture"] == dict(image_size=16, channels=3, z_dim=100, gf_dim=8,
                                             df_dim=8, kernel_size=5)


def test_mismatched_architecture_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    assert train(*TINY, f"--out_dir={out}", "--max_steps=1").returncode == 0
    listing = sorted(str(p) for p in out.rglob("*"))
    line = error_line(train(*TINY, f"--out_dir={out}", "--max_steps=2", "--gf_dim=16"), "train.py")
    assert "gf_dim=8" in line and "gf_dim=16" in line
    assert sorted(str(p) for p in out.rglob("*")) == listing


@pytest.mark.parametrize("args, says", [
    (["--dataset=imagenet"], "--dataset: unknown dataset 'imagenet'"),
    (["--dataset=celeba", "--data_dir={tmp}/empty"], "run ./download.sh, then python prepro.py"),
    (["--batch_size=0"], "--batch_size must be a positive number"),
    (["--max_steps=-3"], "--max_steps must be a positive number"),
    (["--lr=0"], "--lr must be a positive number"),
    (["--image_size=7"], "image size 7 cannot be built"),
    (["--out_dir={tmp}/a_file/run"], "--out_dir: cannot write {tmp}/a_file/run (Not a directory)"),
    (["--init=uniform"], "--init=uniform"),
    (["--batch_size=many"], "--batch_size=many"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--strategy=multi_worker"], "--strategy multi_worker needs TF_CONFIG"),
    (["--eval_every=-1"], "--eval_every must be 0 (no scores) or more"),
    (["--eval_samples=3"], "--eval_samples must be at least 4"),
    (["--ema_decay=1"], "--ema_decay: must be in [0, 1)"),
    (["--d_lr=-1"], "--d_lr must be a positive number"),
    (["--max_images=0"], "--max_images must be a positive number"),
    (["--augment=flip"], "--augment: unknown augmentation 'flip'"),
    (["--ada_target=0.6"], "--ada_target: adapts how often the augmentations are applied"),
    (["--recipe=small_data", "--ada_kimg=0"], "--ada_kimg: must be above 0"),
    (["--loss=hinge", "--label_smoothing=0.1"], "--label_smoothing: has no meaning under the hinge"),
    (["--recipe=large"], "--recipe=large"),
])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, args, says):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a directory")
    args = [a.format(tmp=tmp_path) for a in args]
    if not any(a.startswith("--out_dir") for a in args):
        args.append(f"--out_dir={tmp_path}/run")
    assert says.format(tmp=tmp_path) in error_line(train(*TINY, "--max_steps=2", *args), "train.py")
    assert not (tmp_path / "run").exists() and not (tmp_path / "a_file" / "run").exists()


def test_ctrl_c_saves_a_checkpoint_to_resume_from(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *TINY,
                                f"--out_dir={out}", "--max_steps=100000", "--log_every=1"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("step 3/"):
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert "run the same command to resume" in stdout
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert checkpoint_value(latest, "step") >= 3


def test_damaged_shard_is_named_in_one_line(tmp_path):
    write_shards(tmp_path, size=16, shards=2, per_shard=12)
    shard = tmp_path / "celeba-00001-of-00002.tfrecord"
    damaged = bytearray(shard.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # same size, bad checksum
    shard.write_bytes(bytes(damaged))
    line = error_line(train(*TINY, "--dataset=celeba", f"--data_dir={tmp_path}", "--batch_size=4",
                            f"--out_dir={tmp_path}/run", "--max_steps=50"), "train.py")
    assert line.startswith(f"train.py: error: shard {shard} is damaged")
    assert "delete it and run python prepro.py again" in line


def test_mirrored_strategy_trains_and_resumes_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    first = train(*TINY, f"--out_dir={out}", "--max_steps=2", "--strategy=mirrored")
    assert first.returncode == 0, first.stderr
    assert "1 replica(s), float32, XLA off" in first.stdout  # a CPU: one replica, no XLA
    second = train(*TINY, f"--out_dir={out}", "--max_steps=3", "--strategy=mirrored")
    assert second.returncode == 0 and "at step 2" in second.stdout and "step 3/3" in second.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_workers(*args):
    """train.py --strategy multi_worker as two processes on this machine, joined by TF_CONFIG;
    the chief (worker 0) first."""
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    return [subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), *TINY, *args, "--strategy=multi_worker"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                   "task": {"type": "worker", "index": i}})))
        for i in range(2)]


def finish(processes, timeout=240):
    """[(returncode, stdout, stderr)] of each process once it ends."""
    return [(p.returncode, *out) for p in processes for out in [p.communicate(timeout=timeout)]]


@pytest.mark.parametrize("levers", [[], ["--augment=translation,cutout,color", "--loss=hinge"]],
                         ids=["original", "levers"])
def test_two_workers_train_as_one_process_and_only_the_chief_writes(tmp_path, levers):
    run = tmp_path / "workers"
    outputs = finish(start_workers(f"--out_dir={run}", "--max_steps=4", "--log_every=2",
                                   "--sample_every=2", "--checkpoint_every=2", *levers))
    assert [code for code, _, _ in outputs] == [0, 0], outputs
    (_, chief, _), (_, other, _) = outputs
    assert "2 replica(s)" in chief and "step 4/4" in chief and "step 4/4" not in other
    assert len(os.listdir(run / "logs")) == 1 and not list(run.glob(".worker-*"))
    assert sorted(os.listdir(run / "samples")) == ["step_0000002.png", "step_0000004.png"]
    assert checkpoint_value(tf.train.latest_checkpoint(str(run / "checkpoints")), "step") == 4
    # Two workers with 4 images each train as one process with all 8.
    alone = train(*TINY, "--max_steps=4", "--log_every=4", f"--out_dir={tmp_path}/alone", *levers)
    np.testing.assert_allclose(step_4_numbers(chief), step_4_numbers(alone.stdout), atol=2e-3)


def test_a_stopped_worker_stops_every_worker_after_one_step_and_the_run_resumes_exactly(tmp_path):
    """SIGTERM to one worker, as a preempted cloud machine gets: both workers save the same
    step and stop (none waits forever in a collective), and the resumed run ends as the run
    that never stopped."""
    args = ["--log_every=1", "--sample_every=1000", "--checkpoint_every=1000"]
    chief, other = start_workers(*args, f"--out_dir={tmp_path}/stopped", "--max_steps=100000")
    wait_for(chief, "step 3/")
    other.send_signal(signal.SIGTERM)
    (chief_code, chief_out, chief_err), (other_code, other_out, other_err) = finish([chief, other])
    assert (chief_code, other_code) == (130, 130), (chief_err, other_err)
    assert "Traceback" not in chief_err + other_err
    latest = tf.train.latest_checkpoint(str(tmp_path / "stopped" / "checkpoints"))
    step = checkpoint_value(latest, "step")
    assert f"interrupted: saved {latest}" in chief_out
    assert f"interrupted: saved step {step} with the chief" in other_out

    end = f"--max_steps={step + 3}"
    resumed = finish(start_workers(*args, f"--out_dir={tmp_path}/stopped", end))
    assert [code for code, _, _ in resumed] == [0, 0], resumed
    assert f"at step {step}" in resumed[0][1]
    whole = finish(start_workers(*args, f"--out_dir={tmp_path}/whole", end))
    assert [code for code, _, _ in whole] == [0, 0], whole
    ckpt = f"checkpoints/ckpt-{step + 3}"
    expected, got = variables(tmp_path / "whole" / ckpt), variables(tmp_path / "stopped" / ckpt)
    assert expected.keys() == got.keys()
    for key in expected:
        if not key.startswith("save_counter/"):  # the stop made one save more
            np.testing.assert_array_equal(expected[key], got[key], err_msg=key)


def step_4_numbers(stdout):
    """The losses, D(x) and D(G(z)) of the progress line of step 4."""
    line = stdout.split("step 4/4")[1].split("img/s")[0]
    return [float(x) for x in re.findall(r"-?\d+\.\d+", line)]


# --- faults -------------------------------------------------------------------------------------
def start(*args):
    """train.py in the background, its progress lines readable as they come."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(process, prefix):
    """The lines the process printed up to the first that starts with prefix."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return "".join(lines)
    raise AssertionError(f"{prefix!r} never came: {process.stderr.read()}")


def test_a_run_directory_has_one_writer_and_a_dead_ones_lock_blocks_nothing(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, f"--out_dir={out}", "--log_every=1", "--checkpoint_every=2"]
    first = start(*args, "--max_steps=100000")
    try:
        wait_for(first, "step 3/")
        line = error_line(train(*args, "--max_steps=100000"), "train.py")
        assert f"train.py (pid {first.pid} on {socket.gethostname()}) is training {out}" in line
        # Readers need no lock: sample.py reads the run while it trains.
        assert run_command("sample.py", f"--out_dir={out}").returncode == 0
    finally:
        first.kill()  # SIGKILL: nothing of the process runs after it, its lock included
        first.wait()
    result = train(*args, "--max_steps=6")
    assert result.returncode == 0 and "Resuming from" in result.stdout, result.stderr


@pytest.mark.parametrize("levers", [[], ["--recipe=small_data", "--loss=hinge"]],
                         ids=["original", "levers"])
def test_a_run_that_blows_up_stops_before_writing_a_non_finite_checkpoint(tmp_path, levers):
    out = tmp_path / "run"
    args = [*TINY, f"--out_dir={out}", "--log_every=2", "--checkpoint_every=2", *levers]
    assert train(*args, "--max_steps=4").returncode == 0
    line = error_line(train(*args, "--max_steps=40", "--lr=1e30"), "train.py")
    assert line.startswith("train.py: error: --lr: training blew up by step 6 (d_loss nan")
    assert f"the latest checkpoint, {out}/checkpoints/ckpt-4, is from before it" in line
    assert "smaller one (now 1e+30)" in line
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert latest.endswith("ckpt-4")
    reader = tf.train.load_checkpoint(latest)
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.isfinite(reader.get_tensor(name)).all(), name
    # Resumed with a sound --lr (which replaces the one the checkpoint holds), it trains on.
    result = train(*args, "--max_steps=8")
    assert result.returncode == 0 and "at step 4" in result.stdout, result.stderr
    assert np.isclose(checkpoint_value(tf.train.latest_checkpoint(str(out / "checkpoints")),
                                       "g_optimizer/_learning_rate"), 2e-4)


@pytest.mark.parametrize("damage", ["truncated data", "missing data", "damaged index"])
def test_a_damaged_checkpoint_is_named_kept_and_the_one_before_it_resumes(tmp_path, damage):
    out = tmp_path / "run"
    args = [*TINY, f"--out_dir={out}", "--log_every=2", "--checkpoint_every=2"]
    assert train(*args, "--max_steps=6").returncode == 0
    checkpoints = out / "checkpoints"
    data, index = checkpoints / "ckpt-6.data-00000-of-00001", checkpoints / "ckpt-6.index"
    if damage == "truncated data":
        data.write_bytes(data.read_bytes()[:1000])
    elif damage == "missing data":
        data.unlink()
    else:
        index.write_bytes(index.read_bytes()[:50])
    left = {p.name: p.read_bytes() for p in (data, index) if p.exists()}

    # The readers fall back too, and say why.
    result = run_command("sample.py", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    assert f"checkpoint {checkpoints}/ckpt-6 cannot be read" in result.stdout
    assert "from the generator at step 4" in result.stdout

    result = train(*args, "--max_steps=8")
    assert result.returncode == 0, result.stderr
    assert f"checkpoint {checkpoints}/ckpt-6 cannot be read" in result.stdout
    assert f"Resuming from {checkpoints}/ckpt-4 at step 4" in result.stdout
    assert {name: (checkpoints / "damaged" / name).read_bytes() for name in left} == left
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-8")


def test_a_run_none_of_whose_checkpoints_reads_is_one_line_and_keeps_them(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, f"--out_dir={out}", "--log_every=2", "--checkpoint_every=2"]
    assert train(*args, "--max_steps=4").returncode == 0
    for index in (out / "checkpoints").glob("*.index"):
        index.write_bytes(b"not an index")
    listing = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "logs" not in p.parts}
    line = error_line(train(*args, "--max_steps=6"), "train.py")
    assert f"no checkpoint in {out}/checkpoints can be read" in line
    assert {p: p.read_bytes() for p in listing} == listing


def scalars(log_dir):
    """[(tag, step, value)] of every scalar event in the run's event files, duplicates kept."""
    found = []
    for name in sorted(os.listdir(log_dir)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    found.append((value.tag, event.step, float(tf.make_ndarray(value.tensor))))
    return sorted(found)


def variables(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def dataset_args(name, tmp_path):
    if name == "celeba":
        write_shards(tmp_path, size=16, shards=3, per_shard=100)
        return ["--dataset=celeba", f"--data_dir={tmp_path}"]
    if name == "folder":
        rng = np.random.default_rng(0)
        for i in range(300):
            Image.fromarray(rng.integers(0, 256, (20, 18, 3), np.uint8)).save(tmp_path / f"{i}.png")
        return ["--dataset=folder", f"--data_dir={tmp_path}"]
    if name == "mnist":
        return ["--dataset=mnist", "--image_size=16", "--batch_size=500", "--eval_every=0"]
    return []


@pytest.mark.parametrize("name, stops, options", [
    ("fake", [signal.SIGKILL], []),
    ("mnist", [signal.SIGKILL], []),
    ("celeba", [signal.SIGKILL], []),
    ("folder", [signal.SIGKILL], []),
    ("fake", [signal.SIGKILL, signal.SIGTERM], []),
    ("fake", [signal.SIGKILL], ["--strategy=mirrored"]),
    ("fake", [signal.SIGKILL], ["--ema_decay=0.9"]),
    ("mnist", [signal.SIGKILL], ["--conditional"]),
    # The levers for few images: the recipe's (ADA, with --max_images' held-out images
    # watched), spectral norm, the hinge loss, TTUR and the average; augmentation at every
    # image, conditional; and across replicas.
    ("mnist", [signal.SIGKILL], ["--recipe=small_data", "--max_images=1000", "--spectral_norm",
                                 "--loss=hinge", "--d_lr=4e-4", "--g_lr=1e-4",
                                 "--ema_decay=0.9"]),
    ("mnist", [signal.SIGKILL], ["--conditional", "--augment=translation,cutout,color"]),
    ("fake", [signal.SIGKILL], ["--strategy=mirrored", "--augment=translation,cutout,color"]),
])
def test_a_stopped_and_resumed_run_ends_as_the_run_that_never_stopped(tmp_path, name, stops,
                                                                      options):
    """Bit for bit: the same weights, optimizer state and step, whatever stopped it and
    wherever its data stood (runs of 2.5 epochs of 10 steps, stopped between checkpoints)."""
    data_dir = tmp_path / "images"
    data_dir.mkdir()
    args = [*TINY, "--batch_size=100", *dataset_args(name, data_dir), "--max_steps=25",
            "--log_every=1", "--checkpoint_every=10", *options]
    assert train(*args, f"--out_dir={tmp_path}/whole").returncode == 0
    stopped = [*args, f"--out_dir={tmp_path}/stopped"]
    for stop, at in zip(stops, ("step 14/", "step 17/")):
        process = start(*stopped)
        wait_for(process, at)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == (-9 if stop == signal.SIGKILL else 130), stderr
        assert "Traceback" not in stderr
    result = train(*stopped)
    assert result.returncode == 0 and "Resuming from" in result.stdout, result.stderr
    assert "warning:" not in result.stdout  # a healthy run: no failure named
    whole = variables(f"{tmp_path}/whole/checkpoints/ckpt-25")
    resumed = variables(f"{tmp_path}/stopped/checkpoints/ckpt-25")
    assert whole.keys() == resumed.keys()
    for key in whole:
        if key.startswith("save_counter/"):  # how many saves: SIGTERM makes one more
            continue
        np.testing.assert_array_equal(whole[key], resumed[key], err_msg=key)
    # TensorBoard's curves too: each step once, with the values of the run that never stopped.
    assert scalars(tmp_path / "stopped" / "logs") == scalars(tmp_path / "whole" / "logs")


def test_a_recipe_is_said_first_recorded_and_overridden_by_the_flags_given(tmp_path):
    """--recipe small_data sets its flags unless given; the run logs ADA's p, the gauge r_t and
    D's outputs on the images --max_images leaves out, for every log line."""
    out = tmp_path / "run"
    result = train("--dataset=mnist", "--image_size=16", "--gf_dim=8", "--df_dim=8",
                   "--batch_size=50", "--max_images=200", "--eval_every=0", "--max_steps=4",
                   "--log_every=2", "--recipe=small_data", "--augment=cutout", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "Recipe small_data --augment cutout --ada_target 0.6.")
    run_flags = json.loads((out / "flags.json").read_text())
    assert run_flags["recipe"] == "small_data" and run_flags["augment"] == ["cutout"]
    assert run_flags["ada_target"] == 0.6 and run_flags["max_images"] == 200
    tags = events(out / "logs")
    for tag in ["r_t", "augment_p", "held_out/r_t", "held_out/D(x)"]:
        assert sorted(tags[tag]) == [2, 4], tag
    assert "(held out " in result.stdout and " p 0.000" in result.stdout
    # Resumed without the recipe, the run learns without its levers, and says so.
    result = train("--dataset=mnist", "--image_size=16", "--gf_dim=8", "--df_dim=8",
                   "--batch_size=50", "--max_images=200", "--eval_every=0", "--max_steps=6",
                   "--log_every=2", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if "differ from the run's" in line]
    assert said == ["Flags that differ from the run's flags.json: --max_steps 6 (was 4), "
                    "--recipe original (was small_data), --augment none (was cutout), "
                    "--ada_target None (was 0.6)."], result.stdout
    assert json.loads((out / "flags.json").read_text())["recipe"] == "original"
    # The images --max_images left out are what memorisation is measured against.
    result = run_command("sample.py", f"--out_dir={out}", "--mode=neighbours")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "generated" / "neighbours_seed0.json").read_text())
    assert report["images"] == data.HELD_OUT and report["pixels"]["ratio"] > 0


def test_kill_9_at_random_moments_never_leaves_a_run_that_cannot_resume(tmp_path):
    """A checkpoint every step, and SIGKILL at random moments, saving or not: each restart
    resumes, none meets an unreadable checkpoint or ends in a stack trace."""
    out = tmp_path / "run"
    args = [*TINY, f"--out_dir={out}", "--log_every=1", "--checkpoint_every=1"]
    delays = random.Random(0)
    for attempt in range(5):
        process = start(*args, "--max_steps=100000")
        said = wait_for(process, "step ")
        assert (attempt == 0) != ("Resuming from" in said), said
        assert "cannot be read" not in said
        time.sleep(delays.uniform(0.0, 1.0))
        process.kill()
        _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr
    step = checkpoint_value(tf.train.latest_checkpoint(str(out / "checkpoints")), "step")
    result = train(*args, f"--max_steps={step + 2}")
    assert result.returncode == 0 and f"at step {step}" in result.stdout, result.stderr


def test_a_failed_write_stops_the_run_in_one_line_and_keeps_the_checkpoint_before(tmp_path):
    """A real write failure: a file size limit below a checkpoint's size, as a full disk."""
    out = tmp_path / "run"
    args = [*TINY, f"--out_dir={out}", "--log_every=2", "--checkpoint_every=2"]
    assert train(*args, "--max_steps=2").returncode == 0
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}

    def small_file_limit():  # a checkpoint of the tiny networks and their Adam slots: ~440 kB
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args,
                             "--max_steps=6"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, preexec_fn=small_file_limit)
    line = error_line(result, "train.py")
    assert "cannot write the checkpoint of step 4" in line and "File too large" in line
    assert line.endswith(f"resumes from {out}/checkpoints/ckpt-2")
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before
    result = train(*args, "--max_steps=6")  # room again
    assert result.returncode == 0 and "at step 2" in result.stdout, result.stderr


# --- scores while training ----------------------------------------------------------------------
def test_a_run_scores_itself_keeps_its_best_checkpoint_and_evaluate_py_agrees(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    result = train("--dataset=mnist", "--image_size=16", "--gf_dim=8", "--df_dim=8",
                   "--batch_size=50", "--max_steps=6", "--log_every=2", "--eval_every=2",
                   "--eval_samples=200", f"--cache_dir={cache}", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    assert ("Scoring every 2 steps: 200 generated against 200 real images, mnist features, "
            "resize bilinear 16x16 -> 28x28") in result.stdout
    scores = {step: json.loads((out / "eval" / f"step_{step:07d}_mnist.json").read_text())
              for step in (2, 4, 6)}
    assert result.stdout.count("eval: FID") == 3
    best = min(scores, key=lambda step: scores[step]["fid"])
    assert json.loads((out / "eval" / "best_mnist.json").read_text())["step"] == best
    assert tf.train.latest_checkpoint(str(out / "checkpoints" / "best")).endswith(f"ckpt-{best}")
    logged = events(out / "logs")
    for step, score in scores.items():
        assert score["generator"] == "trained"
        for tag, key in [("fid", "fid"), ("kid", "kid_mean"), ("precision", "precision"),
                         ("recall", "recall")]:
            value = tf.make_ndarray(logged[f"eval/{tag}_mnist"][step].tensor)
            np.testing.assert_allclose(value, score[key], rtol=1e-6)  # TensorBoard's float32
    assert tf.make_ndarray(logged["eval/best_step_mnist"][6].tensor) == best
    # evaluate.py takes the best checkpoint by name, and the cached real statistics: its score
    # is the one the run recorded for that step.
    evaluated = run_command("evaluate.py", f"--out_dir={out}", "--checkpoint=best",
                            "--features=mnist", "--num_samples=200", f"--cache_dir={cache}")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "Real statistics from the cache" in evaluated.stdout
    again = json.loads((out / "eval" / f"step_{best:07d}_mnist.json").read_text())
    assert again["fid"] == scores[best]["fid"] and again["recall"] == scores[best]["recall"]
    # --all scores every kept checkpoint and draws the curve.
    assert run_command("evaluate.py", f"--out_dir={out}", "--all", "--features=mnist",
                       "--num_samples=200", f"--cache_dir={cache}").returncode == 0
    assert Image.open(out / "eval" / "fid_mnist.png").size == (600, 400)


def test_scores_without_their_feature_network_stop_before_training_in_one_line(tmp_path):
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"))  # no Inception weights there
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), *TINY, "--max_steps=2",
         "--eval_every=1", f"--cache_dir={tmp_path}/cache", f"--out_dir={tmp_path}/run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    line = error_line(result, "train.py")
    assert line.startswith("train.py: error: --eval_features: cannot download the Inception")
    assert f"put {features.INCEPTION_WEIGHTS} in {tmp_path}/keras/models/" in line
    assert "the mnist features" in line and line.endswith("--eval_every 0")
    assert not (tmp_path / "run").exists()


# --- a conditional run --------------------------------------------------------------------------
def test_a_short_conditional_mnist_run_draws_the_digits_asked_for(tmp_path):
    """Chance is 10%; 300 small steps read about half their digits as asked."""
    out = tmp_path / "run"
    args = ["--dataset=mnist", "--conditional", "--batch_size=64", "--gf_dim=16",
            "--df_dim=16", "--log_every=100", f"--cache_dir={tmp_path}/cache", f"--out_dir={out}"]
    result = train(*args, "--max_steps=300", "--eval_every=300", "--eval_samples=1000")
    assert result.returncode == 0, result.stderr
    assert "Conditional DCGAN on mnist, conditioned on 10 classes (0, 1, 2" in result.stdout
    score = json.loads((out / "eval" / "step_0000300_mnist.json").read_text())
    assert score["conditional_accuracy"] > 0.25, score
    assert "warning:" not in result.stdout  # a healthy run: no failure named
    arch = json.loads((out / "flags.json").read_text())["architecture"]
    assert arch["labels"] == "classes" and arch["label_names"] == list("0123456789")
    # evaluate.py reads the same, and with 500 real and 500 generated digits of each class
    # (more than the 128 features), the FID of each.
    evaluated = run_command("evaluate.py", f"--out_dir={out}", "--features=mnist",
                            "--num_samples=1000", f"--cache_dir={tmp_path}/cache")
    assert f"conditional accuracy {score['conditional_accuracy']:.4f}" in evaluated.stdout
    assert "FID by class" not in evaluated.stdout  # 100 of each: too few
    evaluated = run_command("evaluate.py", f"--out_dir={out}", "--features=mnist",
                            f"--cache_dir={tmp_path}/cache")
    again = json.loads((out / "eval" / "step_0000300_mnist.json").read_text())
    assert sorted(again["fid_per_class"]) == list("0123456789"), evaluated.stderr
    # Resuming without the labels is refused, in one line that names both.
    line = error_line(train(*args[:1], *args[2:], "--max_steps=400"), "train.py")
    assert "label_names=('0', '1'" in line and "labels=classes" in line


def test_conditional_on_a_source_without_labels_is_one_line(tmp_path):
    line = error_line(train(*TINY, "--conditional", f"--out_dir={tmp_path}/run"), "train.py")
    assert "fake" in line
    assert not (tmp_path / "run").exists()


def test_a_run_conditioned_on_attributes_trains_but_cannot_be_scored_yet(tmp_path):
    write_shards(tmp_path, size=16, shards=2, per_shard=8, attributes=["Smiling", "Male"])
    args = ["--dataset=celeba", f"--data_dir={tmp_path}", "--image_size=16", "--gf_dim=8",
            "--df_dim=8", "--batch_size=4", "--conditional", "--attributes=Male",
            "--max_steps=2", f"--cache_dir={tmp_path}/cache"]
    line = error_line(train(*args, "--eval_every=1", f"--out_dir={tmp_path}/scored"), "train.py")
    assert "conditioned on attributes is not supported" in line and line.endswith("--eval_every 0")
    assert not (tmp_path / "scored").exists()
    result = train(*args, f"--out_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr
    assert "conditioned on 1 attributes (Male)" in result.stdout


# --- a run that has failed ------------------------------------------------------------------
def test_a_run_whose_discriminator_has_won_says_so_and_stops_when_asked(tmp_path):
    """A learning rate no run survives (finite, but D wins at once and G learns nothing): a
    warning that says what it means and what to try, in TensorBoard too; with --stop_on_failure
    the run saves and stops, non-zero."""
    args = ["--dataset=mnist", "--image_size=16", "--gf_dim=8", "--df_dim=8", "--batch_size=50",
            "--lr=1e6", "--beta1=0", "--log_every=10", "--eval_every=0", "--max_steps=300"]
    result = train(*args, f"--out_dir={tmp_path}/warned")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "the discriminator has won" in warnings[0], result.stdout
    assert "Try a lower --lr" in warnings[0]
    texts = events(tmp_path / "warned" / "logs")["failure"]
    assert list(texts) == [int(warnings[0].split("since step ")[1].split(",")[0]) + 200]

    line = error_line(train(*args, f"--out_dir={tmp_path}/stopped", "--stop_on_failure"),
                      "train.py")
    step = list(texts)[0]
    assert line.startswith(f"train.py: error: stopped at step {step}, saved as "
                           f"{tmp_path}/stopped/checkpoints/ckpt-{step}: the discriminator has won")
    assert tf.train.latest_checkpoint(str(tmp_path / "stopped" / "checkpoints")).endswith(
        f"ckpt-{step}")
