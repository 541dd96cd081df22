"""What the networks learnt: the probe of D's features (classify.py, metrics/probe.py), what its
filters see (guided backpropagation) and the memorisation check (metrics/neighbours.py)."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import data
from conftest import TINY, checkpoints, error_line, events, run_command, tiny_models
from metrics import neighbours, probe
from model import Architecture
from solver import Solver


# --- the paper's features ---------------------------------------------------------------------
def test_the_pooled_features_have_the_papers_size_and_ours():
    # The paper's CIFAR-10 discriminator: 32x32, three layers of 256, 512 and 1,024 filters.
    assert probe.feature_size(Architecture(image_size=32, channels=3, df_dim=256)) == 28_672
    assert probe.feature_size(Architecture(image_size=28, channels=1)) == 3_072  # mnist
    assert probe.feature_size(Architecture(image_size=64, channels=3)) == 15_360  # celeba
    _, discriminator = tiny_models()
    images = tf.random.stateless_uniform((3, 16, 16, 3), seed=(1, 2), minval=-1, maxval=1)
    assert probe.feature_extractor(discriminator)(images).shape == (3, probe.feature_size(TINY))


def test_pooling_takes_the_maximum_of_each_cell_of_a_4x4_grid():
    maps = tf.random.stateless_normal((2, 8, 8, 3), seed=(3, 4))
    expected = tf.nn.max_pool2d(maps, 2, 2, "VALID")  # cells of 2x2, row by row
    np.testing.assert_array_equal(probe.pooled(maps), tf.reshape(expected, (2, -1)))
    # 7 rows do not divide into 4: cells of 2 rows (the middle ones overlapping) cover them all.
    odd = tf.random.stateless_normal((2, 7, 7, 3), seed=(5, 6)).numpy()
    cells = probe.pooled(odd).numpy().reshape(2, 4, 4, 3)
    bounds = [(0, 2), (1, 4), (3, 6), (5, 7)]
    for i, (r0, r1) in enumerate(bounds):
        for j, (c0, c1) in enumerate(bounds):
            np.testing.assert_array_equal(cells[:, i, j], odd[:, r0:r1, c0:c1].max(axis=(1, 2)))


def test_the_probe_finds_a_label_the_features_carry_and_not_one_they_do_not():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    test_labels = np.repeat(np.arange(4), 50)
    noise, test_noise = rng.normal(size=(120, 20)), rng.normal(size=(200, 20))
    carried = noise + 4 * np.eye(20)[labels]  # one feature per class says the class
    test_carried = test_noise + 4 * np.eye(20)[test_labels]
    assert probe.linear_probe(carried, labels, test_carried, test_labels, seed=0) > 0.95
    assert probe.linear_probe(noise, labels, test_noise, test_labels, seed=0) < 0.45  # chance 0.25


def test_the_labelled_images_are_a_seeded_draw_of_each_class():
    labels = np.repeat(np.arange(3), [5, 8, 13])
    chosen = probe.draw_labelled(labels, 4, seed=1)
    assert len(set(chosen)) == 12 and np.bincount(labels[chosen]).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(chosen, probe.draw_labelled(labels, 4, seed=1))
    assert set(chosen) != set(probe.draw_labelled(labels, 4, seed=2))


# --- what the filters see ---------------------------------------------------------------------
def test_guided_relu_passes_gradient_only_where_input_and_gradient_are_positive():
    x = tf.constant([-2.0, -1.0, 1.0, 2.0])
    upstream = tf.constant([1.0, -1.0, 1.0, -1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = probe.guided_lrelu(x)
    np.testing.assert_array_equal(tape.gradient(y, x, upstream), [0.0, 0.0, 1.0, 0.0])


def test_guided_backprop_of_a_unit_stays_inside_what_it_sees():
    """The unit at the corner of D's last 4x4 map sees image rows and columns 0 to 9 (two 5x5
    convolutions of stride 2, 'same' padding): its guided gradient is zero beyond them, and the
    forward pass is the network's own."""
    _, discriminator = tiny_models()
    image = tf.random.stateless_uniform((1, 16, 16, 3), seed=(7, 8), minval=-1, maxval=1)
    plain = probe.last_maps(discriminator, image)
    np.testing.assert_allclose(probe.last_maps(discriminator, image, guided=True), plain)
    last = probe.pooled(plain).shape[1]  # the probe's features end with the same maps, pooled
    np.testing.assert_allclose(probe.feature_extractor(discriminator)(image)[:, -last:],
                               probe.pooled(plain), atol=1e-6)
    filter_ = int(np.argmax(plain[0, 0, 0]))
    with tf.GradientTape() as tape:
        tape.watch(image)
        response = probe.last_maps(discriminator, image, guided=True)[0, 0, 0, filter_]
    gradient = tape.gradient(response, image)[0].numpy()
    assert np.abs(gradient[:10, :10]).max() > 0
    assert not gradient[10:].any() and not gradient[:, 10:].any()


def test_the_strongest_filters_are_found_at_their_strongest_response():
    _, discriminator = tiny_models()
    images = tf.random.stateless_uniform((6, 16, 16, 3), seed=(9, 9), minval=-1, maxval=1).numpy()
    maps = probe.last_maps(discriminator, images).numpy()
    found = probe.strongest_filters(discriminator, images, 3)
    strongest = np.sort(maps.max(axis=(0, 1, 2)))[::-1][:3]
    np.testing.assert_allclose([maps[i, r, c, f] for f, i, r, c in found], strongest)


# --- memorisation -----------------------------------------------------------------------------
def test_nearest_is_the_brute_force_nearest_in_blocks(monkeypatch):
    monkeypatch.setattr(neighbours, "ROWS", 7)  # blocks that do not divide the 30 references
    rng = np.random.default_rng(1)
    queries, references = rng.normal(size=(20, 3, 4)), rng.normal(size=(30, 12))
    distances, indices = neighbours.nearest(queries, references, k=3)
    brute = np.linalg.norm(queries.reshape(20, 1, 12) - references[None], axis=2)
    np.testing.assert_array_equal(indices, np.argsort(brute, axis=1)[:, :3])
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :3], rtol=1e-9)


def mnist_split(split):
    digits = data.take(data.load(data.Request("mnist", split=split), 500))
    return np.round((digits + 1) * 127.5).astype(np.uint8)


def test_a_generator_that_returns_training_images_is_flagged_and_new_digits_are_not():
    training, test = mnist_split("train"), mnist_split("test")
    copier = neighbours.memorisation(training[:500], test[500:], training)
    assert copier["generated_median"] == 0 and copier["memorised"]
    # A little noise on copied digits still lies far nearer than any new digit.
    noisy = np.clip(training[:500] + np.random.default_rng(0).integers(-8, 9, training[:500].shape),
                    0, 255)
    assert neighbours.memorisation(noisy, test[500:], training)["memorised"]
    # New digits (half the test split) against new digits (the other half): a ratio near 1.
    fresh = neighbours.memorisation(test[:500], test[500:], training)
    assert not fresh["memorised"] and 0.9 < fresh["ratio"] < 1.1


# --- the commands ------------------------------------------------------------------------------
def write_run(out_dir, dataset="mnist", **flag_values):
    """A run directory of a tiny 28x28 grey model, as train.py leaves it after a few steps."""
    arch = dataclasses.replace(TINY, image_size=28, channels=1)
    solver = Solver(*tiny_models(**{f.name: getattr(arch, f.name)
                                    for f in dataclasses.fields(arch)}), seed=0)
    real = tf.random.stateless_uniform((8, 28, 28, 1), seed=(1, 2), minval=-1, maxval=1)
    solver.train_step(real)
    checkpoints(solver, out_dir).save()
    (out_dir / "flags.json").write_text(json.dumps({"dataset": dataset, **flag_values}))


@pytest.mark.parametrize("dataset, args, message", [
    ("fake", [], "whose images have no class labels to probe with"),
    pytest.param("mnist", ["--labels_per_class=600"], "--labels_per_class 600 is more than the",
                 marks=pytest.mark.slow),  # each a command of its own: 10 to 15 s
    pytest.param("mnist", ["--labels_per_class=1"], "numbers of 2 or more",
                 marks=pytest.mark.slow),
])
def test_bad_probes_are_one_line_and_write_nothing(tmp_path, dataset, args, message):
    write_run(tmp_path, dataset, split="train")
    before = sorted(os.listdir(tmp_path))
    line = error_line(run_command("classify.py", f"--out_dir={tmp_path}", *args), "classify.py")
    assert message in line
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.slow
def test_a_probe_of_a_run_without_a_checkpoint_is_one_line(tmp_path):
    line = error_line(run_command("classify.py", f"--out_dir={tmp_path}"), "classify.py")
    assert f"no checkpoint in {tmp_path}/checkpoints" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_discriminator_that_never_trained_scores_as_the_untrained_baseline(tmp_path):
    """The trained-against-untrained comparison where the answer is known: the run's D is the
    untrained baseline's own weights, so the two rows differ in nothing, to the last digit,
    while raw pixels on the same labels score otherwise."""
    arch = dataclasses.replace(TINY, image_size=28, channels=1)
    discriminator = probe.untrained(arch, "glorot", seed=0)  # the baseline's, of --seed 0
    generator, _ = tiny_models(**{f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)})
    checkpoints(Solver(generator, discriminator, seed=0), tmp_path).save()
    (tmp_path / "flags.json").write_text(json.dumps({"dataset": "mnist", "split": "train",
                                                     "init": "glorot"}))
    result = run_command("classify.py", f"--out_dir={tmp_path}", "--labels_per_class=5",
                         "--draws=2")
    assert result.returncode == 0, result.stderr
    accuracy = json.loads((tmp_path / "eval" / "probe_step_0000000.json").read_text())["accuracy"]
    assert accuracy["dcgan"] == accuracy["random"]
    assert accuracy["pixels"] != accuracy["dcgan"]


@pytest.mark.slow
def test_a_tiny_run_on_the_train_split_probes_neighbours_and_filters(tmp_path):
    """train.py on mnist's train split, then every command of what it learnt: the probe beats
    chance by far, the samples are not memorised, and the pictures have their shapes."""
    out = str(tmp_path / "run")
    trained = run_command("train.py", "--dataset=mnist", "--split=train", f"--out_dir={out}",
                          "--gf_dim=16", "--df_dim=16", "--max_steps=150", "--eval_every=0",
                          "--sample_every=150", "--log_every=50")
    assert trained.returncode == 0, trained.stderr
    probed = run_command("classify.py", f"--out_dir={out}", "--labels_per_class=10", "--draws=2")
    assert probed.returncode == 0, probed.stderr
    report = json.loads(open(os.path.join(out, "eval", "probe_step_0000150.json")).read())
    assert report["train_split"] == "train" and report["test_images"] == 1000
    assert report["feature_size"] == 16 * (16 + 32)
    accuracy = report["accuracy"]
    assert sorted(accuracy) == sorted(["dcgan", "random", "pixels", "supervised"])
    assert all(len(accuracy[m]["10"]) == 2 for m in accuracy)
    assert np.mean(accuracy["dcgan"]["10"]) > 0.5  # chance is 0.1
    assert "probe/dcgan_10" in events(os.path.join(out, "logs"))
    assert "DCGAN features (this run's D)" in probed.stdout

    near = run_command("sample.py", f"--out_dir={out}", "--mode=neighbours", "--k=3")
    assert near.returncode == 0, near.stderr
    found = json.loads(open(os.path.join(out, "generated", "neighbours_seed0.json")).read())
    assert not found["pixels"]["memorised"] and not found["features"]["memorised"]
    picture = tf.io.decode_png(tf.io.read_file(os.path.join(out, "generated",
                                                            "neighbours_seed0.png")))
    assert picture.shape[0] == 8 * 28 and picture.shape[1] == (1 + 2 * 3) * 28

    seen = run_command("sample.py", f"--out_dir={out}", "--mode=filters")
    assert seen.returncode == 0, seen.stderr
    picture = tf.io.decode_png(tf.io.read_file(os.path.join(out, "generated",
                                                            "filters_step150_seed0.png")))
    assert picture.shape[0] == 4 * 28 and picture.shape[1] == 8 * 28


def test_the_probe_of_a_max_images_run_labels_from_its_images_and_scores_on_the_whole_test():
    import classify  # a command's module: its flags are defined only when it runs
    request = data.Request("mnist", split="train", max_images=300)
    train, train_labels = classify.labelled(request, "train")
    test, _ = classify.labelled(request, "test")
    assert len(train) == len(train_labels) == 300 and len(test) == 1000
