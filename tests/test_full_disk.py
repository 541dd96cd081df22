"""Every command that writes, on a full disk: a real file size limit (RLIMIT_FSIZE) in the
command's own process. Each says in one line what it could not write and why, leaves nothing
half-written under a final name, and the same command completes once there is room."""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, error_line, run_command

pytestmark = pytest.mark.slow  # every test here runs commands in processes of their own


def limited(command, *args, limit):
    """python COMMAND ARGS with files limited to `limit` bytes, as a disk with that much room
    left would have them."""
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    target = command.split() if command.startswith("-m ") else [os.path.join(ROOT, command)]
    return subprocess.run([sys.executable, *target, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, preexec_fn=small_files)


def leftovers(folder):
    """What a failed write could leave: files or folders still under a temporary name."""
    return sorted(str(p) for p in folder.rglob("*.tmp*"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small MNIST run of train.py, its flags.json and checkpoints as it leaves them."""
    out = tmp_path_factory.mktemp("full_disk") / "run"
    result = run_command("train.py", "--dataset=mnist", "--max_steps=2", "--gf_dim=8",
                         "--df_dim=8", "--batch_size=16", "--eval_every=0", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("mode, first", [("grid", "grid_seed0.png"),
                                         ("interpolate", "interpolate_slerp_seed0.png"),
                                         ("neighbours", "neighbours_seed0.png"),
                                         ("filters", "filters_step2_seed0.png")])
def test_sample_py_on_a_full_disk(run, mode, first):
    args = [f"--out_dir={run}", f"--mode={mode}", "--pairs=2", "--steps=3"]
    line = error_line(limited("sample.py", *args, limit=300), "sample.py")
    assert line == (f"sample.py: error: cannot write {run}/generated/{first} (File too large): "
                    "make room (or make it writable again) and run the same command")
    assert not (run / "generated" / first).exists() and not leftovers(run)
    result = run_command("sample.py", *args)
    assert result.returncode == 0, result.stderr
    assert (run / "generated" / first).exists()


def test_export_py_on_a_full_disk(run, tmp_path):
    export_dir = tmp_path / "exported"
    args = [f"--out_dir={run}", f"--export_dir={export_dir}"]
    line = error_line(limited("export.py", *args, limit=20_000), "export.py")
    assert line.startswith(f"export.py: error: cannot write {export_dir} (File too large)")
    assert not export_dir.exists() and not leftovers(tmp_path)
    result = run_command("export.py", *args)
    assert result.returncode == 0, result.stderr
    assert (export_dir / "saved_model.pb").exists()


def test_evaluate_py_on_a_full_disk(run, tmp_path):
    """The cache is optional, so it goes on without it; the scores are not."""
    args = [f"--out_dir={run}", "--features=mnist", "--num_samples=100",
            f"--cache_dir={tmp_path}/cache"]
    result = limited("evaluate.py", *args, limit=500)
    line = error_line(result, "evaluate.py")
    scores = run / "eval" / "step_0000002_mnist.json"
    assert line.startswith(f"evaluate.py: error: cannot write {scores} (File too large)")
    assert "Cannot cache the real statistics" in result.stdout
    assert not scores.exists() and not leftovers(run) and not leftovers(tmp_path)
    result = run_command("evaluate.py", *args)
    assert result.returncode == 0, result.stderr
    assert scores.exists()


def test_classify_py_on_a_full_disk(run):
    args = [f"--out_dir={run}", "--labels_per_class=2", "--draws=1", "--nobaselines"]
    line = error_line(limited("classify.py", *args, limit=100), "classify.py")
    scores = run / "eval" / "probe_step_0000002.json"
    assert line.startswith(f"classify.py: error: cannot write {scores} (File too large)")
    assert not scores.exists() and not leftovers(run)
    result = run_command("classify.py", *args)
    assert result.returncode == 0, result.stderr
    assert scores.exists()


def test_prepro_py_on_a_full_disk(tmp_path):
    source, out = tmp_path / "img_align_celeba", tmp_path / "celeba"
    source.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):  # CelebA-shaped noise: about 12 kB a 64x64 PNG
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), np.uint8)).save(
            source / f"{i:06d}.jpg", quality=95)
    args = [f"--input_dir={source}", f"--output_dir={out}", "--shards=2", "--workers=1"]
    line = error_line(limited("prepro.py", *args, limit=20_000), "prepro.py")
    assert line.startswith(f"prepro.py: error: cannot write {out}/celeba-00000-of-00002.tfrecord "
                           "(File too large)")
    assert not list(out.glob("*.tfrecord")) and not (out / "manifest.json").exists()
    assert not leftovers(out)
    result = run_command("prepro.py", *args)
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("*.tfrecord"))) == 2 and (out / "manifest.json").exists()


def test_the_mnist_classifier_command_on_a_full_disk(tmp_path):
    weights = tmp_path / "digits.weights.h5"
    line = error_line(limited("-m metrics.classifier", f"--out={weights}", limit=100_000),
                      "metrics.classifier")
    assert line.startswith(f"metrics.classifier: error: cannot write {weights} (File too large)")
    assert not weights.exists() and not leftovers(tmp_path)
