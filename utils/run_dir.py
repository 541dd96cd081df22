"""A run directory: what train.py writes there, and how the other commands read it back.

    RUN/checkpoints/  the networks, both optimizers, the step, the seed, the fixed z and the
                      architecture (tf.train.CheckpointManager: ckpt-STEP, the last 3 kept)
    RUN/logs/         TensorBoard event files
    RUN/samples/      the fixed-z sample grid, step_STEP.png
    RUN/flags.json    train.py's flags and the architecture, for people and for evaluate.py
    RUN/generated/    what sample.py writes
    RUN/eval/         what evaluate.py writes
"""
import collections
import json
import os

import tensorflow as tf

import config
from model import Architecture, Generator
from utils import files

ARCH_KEY = "arch/.ATTRIBUTES/VARIABLE_VALUE"  # where a checkpoint keeps the architecture
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"

Snapshot = collections.namedtuple("Snapshot", "generator step checkpoint")


class RunDir:
    def __init__(self, path):
        self.path = path
        self.checkpoints = os.path.join(path, "checkpoints")
        self.logs = os.path.join(path, "logs")
        self.samples = os.path.join(path, "samples")
        self.generated = os.path.join(path, "generated")
        self.eval = os.path.join(path, "eval")
        self.flags_json = os.path.join(path, "flags.json")

    def create(self):
        files.make_folder(self.path, "choose another --out_dir")

    def write_flags(self, values):
        files.write_json(self.flags_json, values)

    def read_flags(self):
        """train.py's flags; a run whose flags.json is missing or damaged is one line."""
        if not os.path.isfile(self.flags_json):
            raise config.ConfigError(f"{self.flags_json} not found: pass --dataset (and --data_dir) "
                                     "of the images the run trained on")
        try:
            with open(self.flags_json) as f:
                return json.load(f)
        except ValueError as e:
            raise config.ConfigError(f"{self.flags_json} is damaged ({e}): pass --dataset") from None

    def checkpoint(self, path=None):
        """path if given, else the latest checkpoint; a run without one is one line."""
        path = path or tf.train.latest_checkpoint(self.checkpoints)
        if path is None:
            raise config.ConfigError(f"no checkpoint in {self.checkpoints}: train first (python "
                                     f"train.py --out_dir {self.path}) or pass --checkpoint")
        return path


def read_checkpoint(path):
    """(architecture, step) that a checkpoint records, read without building anything."""
    try:
        reader = tf.train.load_checkpoint(path)
        return (Architecture.from_json(reader.get_tensor(ARCH_KEY)),
                int(reader.get_tensor(STEP_KEY)))
    except (tf.errors.OpError, ValueError, TypeError) as e:
        raise config.ConfigError(f"cannot read checkpoint {path} ({type(e).__name__}): pass a "
                                 "checkpoint that train.py wrote, or start a new run") from None


def load_generator(run_dir, checkpoint=None):
    """Snapshot(generator, step, checkpoint) of the run's latest checkpoint (or of checkpoint),
    the generator built from the architecture it records: no training flag is repeated."""
    path = run_dir.checkpoint(checkpoint)
    arch, step = read_checkpoint(path)
    generator = Generator(arch)
    status = tf.train.Checkpoint(generator=generator).restore(path).expect_partial()
    try:
        status.assert_existing_objects_matched()  # every generator variable came from the file
    except AssertionError:
        raise config.ConfigError(f"checkpoint {path} does not hold this project's generator "
                                 "(made by another version of the code?): train a new run") from None
    return Snapshot(generator, step, path)
