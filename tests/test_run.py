"""train.py in this process: check() refuses every bad run before anything is written, and a
dataset is one record and one loader."""
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import config
import data
import train
from training import checkpoint

TINY = ["--image_size=16", "--gf_dim=8", "--df_dim=8", "--batch_size=8", "--log_every=1"]


@pytest.fixture
def train_flags():
    """parse(*args): train.py's flags set from the command line args, as train.py sets them."""
    if "eval_features" not in flags.FLAGS:
        train.define_flags()

    def parse(*args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train.py", *args])

    yield parse
    flags.FLAGS.unparse_flags()


def listing(folder):
    """{path: bytes} of every file below the folder."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_checks_everything_before_it_writes_anything(tmp_path, train_flags):
    out = tmp_path / "run"
    args = ["--dataset=fake", *TINY, f"--out_dir={out}", "--checkpoint_every=1", "--eval_every=0"]
    train_flags(*args, "--max_steps=2")
    run = train.check()
    assert run.schedule.max_steps == 2 and run.evaluator is None and not out.exists()
    train.run()  # the loop writes: the lock, flags.json, logs, samples, checkpoints
    assert json.loads((out / "flags.json").read_text())["architecture"]["gf_dim"] == 8
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index")) == ["ckpt-1.index",
                                                                             "ckpt-2.index"]
    # A run of another shape, made otherwise or asking what it cannot have: check() refuses it,
    # naming the setting at fault (which the command prints as its flag), and nothing changes.
    before = listing(out)
    for refused, setting in [(["--gf_dim=16"], "out_dir"), (["--ema_decay=0.5"], "ema_decay"),
                             (["--conditional"], "dataset"), (["--batch_size=2000"], "batch_size"),
                             (["--eval_every=1", f"--eval_features={tmp_path}/none.keras"],
                              "features")]:
        train_flags(*args, "--max_steps=4", *refused)
        with pytest.raises(config.ConfigError) as error:
            train.check()
        assert error.value.setting == setting, error.value
        assert listing(out) == before
    # A checkpoint that does not read: check() resumes from the one before and moves nothing;
    # the run moves it aside once the run directory is its own.
    damaged = out / "checkpoints" / "ckpt-2.data-00000-of-00001"
    damaged.write_bytes(damaged.read_bytes()[:100])
    before = listing(out)
    train_flags(*args, "--max_steps=3")
    assert train.check().checkpoints.restored.endswith("ckpt-1") and listing(out) == before
    train.run()
    assert (out / "checkpoints" / "damaged" / damaged.name).exists()
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index")) == ["ckpt-1.index",
                                                                             "ckpt-2.index",
                                                                             "ckpt-3.index"]


def stripes(request):
    """A toy dataset: 12 images of 0 to 5 horizontal stripes (the class is the count)."""
    size = request.image_size
    pixels = np.zeros((12, size, size, 3), np.uint8)
    for i in range(12):
        for stripe in range(i % 6):
            pixels[i, 2 * stripe] = 255
    source = data.held_images(pixels, request.seed, size)
    if not request.conditional:
        return source
    classes = np.arange(12, dtype=np.int32) % 6
    return dataclasses.replace(source, label=lambda i: tf.gather(classes, i),
                               labels=data.Labels("classes", tuple("012345")))


def test_a_dataset_is_one_record_and_one_loader(tmp_path, train_flags, monkeypatch):
    monkeypatch.setitem(data.DATASETS, "stripes", data.Dataset(
        stripes, "toy stripes", image_size=16, epochs=2, labels="classes"))
    out = tmp_path / "run"
    train_flags("--dataset=stripes", "--conditional", *TINY[1:3], "--batch_size=4",
                f"--out_dir={out}")
    run = train.check()
    assert run.images.image_size == 16 and run.images.labels.names == tuple("012345")
    assert run.schedule.max_steps == 2 * 3  # its epochs, of 12 images in batches of 4
    assert run.evaluator is None  # its record asks for no scores
    train.run()
    assert json.loads((out / "flags.json").read_text())["architecture"]["label_names"] == list(
        "012345")
    images, labels = next(iter(run.images.stream()))
    stripes_seen = np.sum(images.numpy()[:, ::2, 0, 0] > 0, axis=1)
    np.testing.assert_array_equal(stripes_seen, labels.numpy())  # each image beside its label


def test_a_resume_that_would_read_other_images_is_refused_unless_allowed(tmp_path, train_flags,
                                                                        capsys):
    """Another batch size moves where the data resumes (step x batch size): refused in one line
    that names both, with nothing written; allowed, the run goes on from the image it reached."""
    out = tmp_path / "run"
    args = ["--dataset=fake", *TINY[:3], f"--out_dir={out}", "--eval_every=0"]
    train_flags(*args, "--batch_size=8", "--max_steps=4")
    train.run()
    before = listing(out)
    train_flags(*args, "--batch_size=4", "--max_steps=6")
    with pytest.raises(config.ConfigError, match=f"{out} was trained with --batch_size 8, and "
                                                 "this run has --batch_size 4: .* --allow_changes "
                                                 "to go on from image 32 "):
        train.check()
    assert listing(out) == before
    train_flags(*args, "--batch_size=4", "--max_steps=6", "--allow_changes")
    run = train.check()
    assert run.checkpoints.next_image() == 32  # 4 steps of 8, not 4 of 4
    assert ("at step 4, with --batch_size 4 (not --batch_size 8), from image 32 of 1,000 in "
            "epoch 1.") in capsys.readouterr().out
    train.run()
    latest = checkpoint.read_position(str(out / "checkpoints" / "ckpt-6"))
    assert latest == checkpoint.Position("fake", 1000, 4, 2, image=32 + 2 * 4)
