"""What several test modules share: the repository's root, tiny networks and solvers, running a
command as a user does, and reading what a run wrote."""
import dataclasses
import io
import json
import os
import subprocess
import sys

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, as the commands set it)

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

# Two logical CPUs, so that tf.distribute can be tested with two replicas on this machine. Must
# happen before TensorFlow starts; the default strategy still uses one device.
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)

import config  # noqa: E402 (after the devices are set)
import data  # noqa: E402
from model import Architecture, Discriminator, Generator  # noqa: E402
from ops import batch_norm  # noqa: E402
from solver import Solver  # noqa: E402
from training import checkpoint  # noqa: E402
from training.run_dir import RunDir  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny networks: the properties tested here do not depend on the size.
TINY = Architecture(image_size=16, channels=3, z_dim=16, gf_dim=8, df_dim=8, kernel_size=5)


def tiny_models(seed=0, **changes):
    """A generator and a discriminator of TINY, with the changes, from the seed's weights."""
    keras.utils.set_random_seed(seed)
    arch = dataclasses.replace(TINY, **changes)
    return Generator(arch), Discriminator(arch)


def load(dataset, batch_size, **options):
    """data.load of data.Request(dataset, **options)."""
    return data.load(data.Request(dataset, **options), batch_size)


def checkpoints(solver, out_dir):
    """The solver's checkpoints in the run directory out_dir."""
    return checkpoint.Checkpoints(solver, RunDir(str(out_dir)))


@pytest.fixture
def solver():
    return Solver(*tiny_models(), seed=0)


@pytest.fixture
def real_batch():
    return tf.random.stateless_uniform((8, 16, 16, 3), seed=(1, 2), minval=-1.0, maxval=1.0)


def snapshot(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


NETWORKS = ("generator", "discriminator")


def train(solver, batches, steps=3):
    iterator = iter(batches)
    return [{k: float(v) for k, v in solver.train_step(next(iterator)).items()}
            for _ in range(steps)]


def biases_before_batch_norm(network):
    """The batch norm subtracts these biases, so their true gradient is zero and what they get
    is float noise, which Adam scales up to learning-rate-sized steps in any direction."""
    layers = network.net.layers
    return {layer.bias.path for layer, after in zip(layers, layers[1:])
            if isinstance(after, batch_norm) and getattr(layer, "bias", None) is not None}


def same_start(reference, other):
    """The variables both start from, checked equal."""
    start = {n: snapshot(getattr(reference, n).variables) for n in NETWORKS}
    for n in NETWORKS:
        for a, b in zip(start[n], snapshot(getattr(other, n).variables)):
            np.testing.assert_array_equal(a, b)
    return start


def assert_same_metrics(a, b, rtol):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([float(a[k]) for k in a], [float(b[k]) for k in a], rtol=rtol)


def assert_same_variables(reference, other, start, atol):
    """The same weights and batch norm statistics, but for the biases that float noise moves."""
    for n in NETWORKS:
        noise = biases_before_batch_norm(getattr(reference, n))
        assert noise or n == "discriminator" and reference.discriminator.arch.spectral_norm
        # one per network at this size (a spectrally normalised D has no batch norm)
        for a, b, initial in zip(getattr(reference, n).variables, getattr(other, n).variables,
                                 start[n]):
            if a.path in noise:  # where they went is noise: they must only stay near the start
                assert max(np.abs(a - initial).max(), np.abs(b - initial).max()) < 1e-4
            else:
                np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=a.path)


def assert_same_training(reference, other, batches, other_batches, rtol, atol):
    """Same losses at every train_step, and the same weights and batch norm statistics after."""
    start = same_start(reference, other)
    for a, b in zip(train(reference, batches), train(other, other_batches)):
        assert_same_metrics(a, b, rtol)
    assert_same_variables(reference, other, start, atol)


def assert_same_steps(reference, reference_step, other, other_step, batches, rtol=1e-5,
                      atol=1e-6):
    """Two step functions, reference_step(real, z) of the solver reference and other_step of
    other, called directly on the same batches and the same z: the same losses at every step,
    and the same weights and batch norm statistics after."""
    start = same_start(reference, other)
    for step, real in enumerate(batches):
        z = reference.sample_z(len(real), step)
        assert_same_metrics(reference_step(real, z), other_step(real, z), rtol)
    assert_same_variables(reference, other, start, atol)


# --- commands, as a user runs them ------------------------------------------------------------
def run_command(command, *args):
    """python COMMAND ARGS in the repository, as a user runs it: a script (train.py) or a
    module ("-m metrics.classifier")."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    target = command.split() if command.startswith("-m ") else [os.path.join(ROOT, command)]
    return subprocess.run([sys.executable, *target, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def error_line(result, command):
    """The command's one-line error; fails unless it exited non-zero with exactly that."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def events(log_dir):
    """{tag: {step: value}} from the run's TensorBoard event files."""
    found = {}
    for name in sorted(os.listdir(log_dir)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = value
    return found


def checkpoint_value(path, name):
    return tf.train.load_checkpoint(path).get_tensor(checkpoint.value(name))


def shard_attributes(number, names):
    """The 0/1 attributes write_shards gives image number: bit j of the number for names[j]."""
    return [(number >> j) & 1 for j in range(len(names))]


def write_shards(directory, size, shards=2, per_shard=5, attributes=None):
    """TFRecords and a manifest as prepro.py writes them, of images of one grey level each:
    10 * (the image's number), modulo 256; with attributes (their names), each image's
    shard_attributes too."""
    entries = []
    for s in range(shards):
        name = f"celeba-{s:05d}-of-{shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(directory / name)) as writer:
            for i in range(per_shard):
                number = s * per_shard + i
                pixels = np.full((size, size, 3), 10 * number % 256, np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                feature = {
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
                    "filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"%06d.jpg" % i])),
                }
                if attributes:
                    feature["attributes"] = tf.train.Feature(int64_list=tf.train.Int64List(
                        value=shard_attributes(number, attributes)))
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())
        entries.append({"file": name, "count": per_shard, "bytes": (directory / name).stat().st_size})
    manifest = {"size": size, "shards": entries, **({"attributes": attributes} if attributes else {})}
    (directory / config.MANIFEST).write_text(json.dumps(manifest))
