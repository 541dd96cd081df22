"""A run directory: what train.py writes there, and how the other commands read it back.

    RUN/checkpoints/  the networks, both optimizers, the step, the seed, the fixed z and the
                      architecture (tf.train.CheckpointManager: ckpt-STEP, the last 3 kept)
    RUN/checkpoints/best/  the checkpoint of the lowest FID so far (train.py --eval_every)
    RUN/logs/         TensorBoard event files
    RUN/samples/      the fixed-z sample grid, step_STEP.png
    RUN/flags.json    train.py's flags and the architecture, for people and for evaluate.py
    RUN/generated/    what sample.py writes
    RUN/eval/         the scores: step_STEP_FEATURES.json each, best_FEATURES.json (which
                      step the best checkpoint is), fid_FEATURES.png (evaluate.py --all)
    RUN/.lock         held by the train.py that is writing the run: one writer at a time
"""
import collections
import fcntl
import glob
import json
import os
import socket

import tensorflow as tf
from google.protobuf import text_format

import config
from model import Architecture, Generator
from utils import files

ARCH_KEY = "arch/.ATTRIBUTES/VARIABLE_VALUE"  # where a checkpoint keeps the architecture
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"

EMA = "generator_ema"  # the checkpoint's name for the moving average of the generator

# ema: whether generator is the checkpoint's moving average (train.py --ema_decay)
Snapshot = collections.namedtuple("Snapshot", "generator step checkpoint ema")
# What reading a damaged checkpoint raises: a damaged index or a missing file (OpError), a
# truncated data file (IndexError), a record that is not ours (ValueError, TypeError), a variable
# missing from the file (AssertionError).
DAMAGE = (tf.errors.OpError, IndexError, ValueError, TypeError, AssertionError)


class Damaged(config.ConfigError):
    """A checkpoint that cannot be read; reason: what reading it raised."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


class RunDir:
    def __init__(self, path):
        self.path = path
        self.checkpoints = os.path.join(path, "checkpoints")
        self.logs = os.path.join(path, "logs")
        self.samples = os.path.join(path, "samples")
        self.generated = os.path.join(path, "generated")
        self.best = os.path.join(self.checkpoints, "best")
        self.eval = os.path.join(path, "eval")
        self.flags_json = os.path.join(path, "flags.json")

    def create(self, lock=True):
        """Create the run directory and take its lock, or stop with one line that names the
        process holding it. The lock is the kernel's (flock): it goes with the process that
        holds it, however it ends, so a run killed or cut off by a power loss blocks nothing.
        lock=False: for the workers of a multi-worker run other than the chief, which write no
        file of their own there."""
        files.make_folder(self.path, "choose another --out_dir")
        if not lock:
            return
        self.lock = open(os.path.join(self.path, ".lock"), "a+")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.seek(0)
            holder = self.lock.read().strip() or "another process"
            self.lock.close()
            raise config.ConfigError(f"{holder} is training {self.path}: wait for it to finish "
                                     "(or stop it), or choose another --out_dir") from None
        self.lock.truncate(0)
        self.lock.write(f"train.py (pid {os.getpid()} on {socket.gethostname()})\n")
        self.lock.flush()

    def eval_json(self, step, features):
        return os.path.join(self.eval, f"step_{step:07d}_{features}.json")

    def best_json(self, features):
        return os.path.join(self.eval, f"best_{features}.json")

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

    def trim_logs(self, step):
        """Drop from the event files the events past step, which a run resumed at step writes
        again: TensorBoard then shows each step once. A file cut short by a kill keeps its
        whole records. Each file is rewritten whole or not at all."""
        if not os.path.isdir(self.logs):
            return
        for name in sorted(os.listdir(self.logs)):
            path = os.path.join(self.logs, name)
            records, past = [], False
            try:
                for record in tf.data.TFRecordDataset(path):
                    event = tf.compat.v1.Event.FromString(record.numpy())
                    if event.step > step:
                        past = True
                    else:
                        records.append(record.numpy())
            except tf.errors.DataLossError:  # the last record, half written when killed
                past = True
            if past:
                with files.replacing(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
                    for record in records:
                        writer.write(record)

    def newest_first(self):
        """The checkpoints that CheckpointManager lists in the run, newest first."""
        state = tf.train.get_checkpoint_state(self.checkpoints)
        return list(reversed(state.all_model_checkpoint_paths)) if state else []

    def load_latest(self, load):
        """(path, load(path), damaged) for the newest checkpoint that load() can read, or
        (None, None, []) when the run has none; damaged lists the newer ones that cannot be
        read, each named on stdout and left as it is. A run none of whose checkpoints reads is
        one line. load raises Damaged, or one of DAMAGE, for a checkpoint it cannot read."""
        damaged = []
        for path in self.newest_first():
            try:
                return path, load(path), damaged
            except Damaged as e:
                reason = e.reason
            except config.ConfigError:  # readable, but refused (another architecture)
                raise
            except DAMAGE as e:
                reason = type(e).__name__
            print(f"checkpoint {path} cannot be read ({reason}): it stays as it is; trying the "
                  "one before it", flush=True)
            damaged.append(path)
        if damaged:
            raise config.ConfigError(
                f"no checkpoint in {self.checkpoints} can be read (the files stay as they are): "
                "copy back a good one, or choose another --out_dir to start over")
        return None, None, []

    def set_aside(self, damaged, kept):
        """Move the files of the damaged checkpoints, as they are, to RUN/checkpoints/damaged/,
        and make the checkpoint list end at kept: the run saves its next checkpoints under
        names the damaged ones had, and must not overwrite them."""
        aside = os.path.join(self.checkpoints, "damaged")
        os.makedirs(aside, exist_ok=True)
        for path in damaged:
            for file in glob.glob(glob.escape(path) + ".*"):
                os.replace(file, os.path.join(aside, os.path.basename(file)))
        state = tf.train.get_checkpoint_state(self.checkpoints)
        kept_ones = [(os.path.basename(p), t) for p, t in zip(
            state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps)
            if p not in damaged]
        del state.all_model_checkpoint_paths[:], state.all_model_checkpoint_timestamps[:]
        state.model_checkpoint_path = os.path.basename(kept)
        state.all_model_checkpoint_paths.extend(p for p, _ in kept_ones)
        state.all_model_checkpoint_timestamps.extend(t for _, t in kept_ones)
        files.write_text(os.path.join(self.checkpoints, "checkpoint"),
                         text_format.MessageToString(state))
        return aside


def read_checkpoint(path):
    """(architecture, step) that a checkpoint records, read without building anything."""
    try:
        reader = tf.train.load_checkpoint(path)
        return (Architecture.from_json(reader.get_tensor(ARCH_KEY)),
                int(reader.get_tensor(STEP_KEY)))
    except DAMAGE as e:
        raise Damaged(f"cannot read checkpoint {path} ({type(e).__name__}): pass a checkpoint "
                      "that train.py wrote, or start a new run", type(e).__name__) from None


def checkpoint_step(path):
    """The step in a checkpoint's name, ckpt-STEP (CheckpointManager names them so)."""
    return int(path.rsplit("-", 1)[1])


def has_ema(path):
    """Whether the checkpoint holds a moving average of the generator."""
    return any(name.startswith(EMA + "/") for name, _ in tf.train.list_variables(path))


def read_generator(path, ema=True):
    """(generator, step, ema) of one checkpoint, the generator built from the architecture it
    records (no training flag is repeated): its moving average when it has one and ema is
    true, else the generator as trained."""
    arch, step = read_checkpoint(path)
    generator = Generator(arch)
    ema = ema and has_ema(path)
    try:
        saved = tf.train.Checkpoint(**{EMA if ema else "generator": generator})
        status = saved.restore(path).expect_partial()
        status.assert_existing_objects_matched()  # every generator variable came from the file
    except DAMAGE as e:
        raise Damaged(f"checkpoint {path} does not hold this project's generator whole "
                      f"({type(e).__name__}): pass another --checkpoint, or train a new run",
                      type(e).__name__) from None
    return generator, step, ema


EMA_FLAG_HELP = ("use the run's moving average of the generator (train.py --ema_decay) when it "
                 "has one; --noema: the generator as trained")


def describe(snapshot):
    """Which generator a command uses, in words."""
    kind = "the moving average of the generator" if snapshot.ema else "the generator"
    return f"{kind} at step {snapshot.step}"


def load_generator(run_dir, checkpoint=None, ema=True):
    """Snapshot of checkpoint, else of the run's newest checkpoint that reads; its moving
    average of the generator when it has one and ema is true. checkpoint "best": the run's
    checkpoint of the lowest FID."""
    if checkpoint == "best":
        checkpoint = tf.train.latest_checkpoint(run_dir.best)
        if checkpoint is None:
            raise config.ConfigError(
                f"{run_dir.path} has no best checkpoint: train.py keeps one when it evaluates "
                f"as it trains (python train.py --out_dir {run_dir.path} --eval_every N, and "
                "--max_steps past the run's step)")
    if checkpoint:
        generator, step, ema = read_generator(checkpoint, ema)
        return Snapshot(generator, step, checkpoint, ema)
    path, loaded, _ = run_dir.load_latest(lambda path: read_generator(path, ema))
    if path is None:
        raise config.ConfigError(f"no checkpoint in {run_dir.checkpoints}: train first (python "
                                 f"train.py --out_dir {run_dir.path}) or pass --checkpoint")
    generator, step, ema = loaded
    return Snapshot(generator, step, path, ema)
