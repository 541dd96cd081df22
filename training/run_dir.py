"""A run directory: where train.py writes, and where the other commands read what it wrote.

    RUN/checkpoints/  the checkpoints (training/checkpoint.py says what each holds)
    RUN/checkpoints/best/  the checkpoint of the lowest FID so far (train.py --eval_every)
    RUN/logs/         TensorBoard event files
    RUN/samples/      the fixed-z sample grid, step_STEP.png
    RUN/flags.json    train.py's flags and the architecture, for people and for evaluate.py
    RUN/generated/    what sample.py writes
    RUN/eval/         the scores: step_STEP_FEATURES.json each, best_FEATURES.json (which
                      step the best checkpoint is), fid_FEATURES.png (evaluate.py --all)
    RUN/.lock         held by the train.py that is writing the run: one writer at a time
"""
import fcntl
import json
import os
import socket

import tensorflow as tf

import config
from utils import files


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
        files.make_folder(self.path, "choose another run directory", "out_dir")
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
                                     "(or stop it), or choose another run directory",
                                     "out_dir") from None
        self.lock.truncate(0)
        self.lock.write(f"train.py (pid {os.getpid()} on {socket.gethostname()})\n")
        self.lock.flush()

    def sample_png(self, step):
        return os.path.join(self.samples, f"step_{step:07d}.png")

    def eval_json(self, step, features):
        return os.path.join(self.eval, f"step_{step:07d}_{features}.json")

    def best_json(self, features):
        return os.path.join(self.eval, f"best_{features}.json")

    def write_flags(self, values):
        files.write_json(self.flags_json, values)

    def read_flags(self):
        """train.py's flags; a run whose flags.json is missing or damaged is one line."""
        if not os.path.isfile(self.flags_json):
            raise config.ConfigError(f"{self.flags_json} not found: name the dataset (and its "
                                     "folder) the run trained on", "dataset")
        try:
            with open(self.flags_json) as f:
                return json.load(f)
        except ValueError as e:
            raise config.ConfigError(f"{self.flags_json} is damaged ({e}): name the dataset "
                                     "the run trained on", "dataset") from None

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
