"""The training loop: the solver's train step again and again, and around it what a run leaves
in its run directory, which the loop owns once it is given it. As the original: a log line and
TensorBoard scalars every log_every steps, the fixed-z sample grid every sample_every, a
checkpoint every checkpoint_every (and at the end); and every eval_every steps the sampler's
scores, with the checkpoint of the lowest FID kept.

It also keeps the run whole: one train.py writes a run directory at a time (its lock); no
checkpoint is written with a number in it that is not finite; a write that fails stops the run in
one line; Ctrl-C or SIGTERM finishes the step and saves it; and in a multi-worker run, one
worker's stop stops every worker after the same step.
"""
import contextlib
import dataclasses
import json
import math
import os
import signal
import time

import numpy as np
import tensorflow as tf

import config
from metrics import evaluation
from model import each_label, label_vector, to_pixels
from training import checkpoint, failure
from utils import cli, files

GRID_COLUMNS = 8  # z per row of a conditional run's sample grid, a row per class


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When the loop does what, in steps."""
    max_steps: int  # train until this step
    log_every: int = config.LOG_EVERY  # also the only time the step's numbers are read back
    sample_every: int = config.SAMPLE_EVERY
    checkpoint_every: int = config.CHECKPOINT_EVERY
    eval_every: int = 0  # 0: no scores
    stop_on_failure: bool = False  # a failure (training/failure.py) stops the run, else warns


def train(solver, checkpoints, images, schedule, *, evaluator=None, flags=None):
    """Take the run directory of checkpoints (its lock; flags, train.py's flags, to its
    flags.json), then train on images (a data.Data, its batches global ones) from the solver's
    step and the image the checkpoints say the run reached, to schedule.max_steps, and return
    the last checkpoint's path. evaluator: a metrics.evaluation.Evaluator to score the sampler
    with every schedule.eval_every steps and at the end.

    Ctrl-C (or SIGTERM) finishes the step, saves a checkpoint and raises KeyboardInterrupt,
    so that the same command resumes from there; a second Ctrl-C stops at once.
    """
    loop = Loop(solver, checkpoints, schedule, evaluator, images.held_out)
    loop.open(flags)
    # The images from where the run stands: the stopped run's next batch is the resumed run's.
    batches = images.stream(checkpoints.next_image())
    path = loop.run(solver.strategy.experimental_distribute_dataset(batches), images.batch_size)
    if loop.chief:
        print(f"Done at step {schedule.max_steps}: checkpoint {path}, samples in "
              f"{loop.run_dir.samples}, curves with: tensorboard --logdir {loop.run_dir.logs}")
    return path


class Loop:
    def __init__(self, solver, checkpoints, schedule, evaluator=None, held_out=None):
        """held_out: (images, labels or None) the run does not train on, which D is watched on
        at each log line."""
        self.solver, self.checkpoints, self.held_out = solver, checkpoints, held_out
        self.schedule, self.evaluator = schedule, evaluator
        self.run_dir, self.chief = checkpoints.run_dir, checkpoints.chief
        self.watch = failure.Watch()
        variables = (solver.generator.variables + solver.discriminator.variables
                     + solver.g_optimizer.variables + solver.d_optimizer.variables)
        self.finite = tf.function(lambda: tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(v)) for v in variables
             if tf.as_dtype(v.dtype).is_floating]))

    def open(self, flags):
        """The run directory becomes this run's: its lock, then the checkpoints that did not
        read moved aside, flags.json, and the events a stopped run logged past its
        checkpoint dropped. Only the chief writes (the other workers take no lock)."""
        self.run_dir.create(lock=self.chief)
        if not self.chief:
            return
        with self.writing("checkpoints/damaged/"):
            aside = self.checkpoints.set_aside_damaged()
        if aside:
            print(f"Moved the checkpoints that cannot be read to {aside}.")
        if flags is not None:  # how the run was made, for evaluate.py and for people
            with self.writing("flags.json"):
                self.run_dir.write_flags(flags)
        with self.writing("the TensorBoard logs"):
            self.run_dir.trim_logs(int(self.solver.step.numpy()))

    def run(self, batches, batch_size):
        """Train on the batches (of batch_size images) to the last step; its checkpoint."""
        schedule, step = self.schedule, int(self.solver.step.numpy())
        self.batch_size = batch_size
        writer = (tf.summary.create_file_writer(self.run_dir.logs) if self.chief
                  else tf.summary.create_noop_writer())
        self.window = step, time.perf_counter()
        batches = iter(batches)
        with writer.as_default(), stop_requests() as requests:
            stop, agree = stop_together(self.solver.strategy, requests, self.run_dir.checkpoints)
            while step < schedule.max_steps and not stop:
                metrics = self.solver.train_step(next(batches))
                step += 1
                agree()
                last = step == schedule.max_steps
                if step % schedule.log_every == 0 or last:
                    self.log(step, metrics)
                if self.chief and (step % schedule.sample_every == 0 or last):
                    with self.writing(f"the sample grid of step {step}"):
                        self.write_samples(step)
                if self.evaluator and self.chief and (step % schedule.eval_every == 0 or last):
                    self.evaluate(step)
                if step % schedule.checkpoint_every == 0:
                    self.save()
        path = self.save()
        if stop:
            print(f"\ninterrupted: saved {path or f'step {step} with the chief'}; run the same "
                  "command to resume", flush=True)
            raise KeyboardInterrupt
        return path

    def log(self, step, metrics):
        """Losses, D(x) and D(G(z)) to TensorBoard and a line; reading them back waits for the
        step, so it is done only here."""
        values = {k: float(v) for k, v in metrics.items()}
        if self.held_out is not None:
            images, labels = self.held_out
            values["held_out/r_t"], values["held_out/D(x)"] = map(
                float, self.solver.held_out(images, labels))
        if not all(map(math.isfinite, values.values())):
            raise self.blown_up(step, values)
        for name, value in values.items():
            tf.summary.scalar(name, value, step=step)
        self.failed(step, self.watch.losses(step, values), everywhere=True)
        window_step, window_time = self.window
        self.window = step, time.perf_counter()
        steps_per_s = (step - window_step) / (self.window[1] - window_time)
        if self.chief:
            print(progress_line(step, self.schedule.max_steps, values,
                                images_per_s=steps_per_s * self.batch_size,
                                seconds_left=(self.schedule.max_steps - step) / steps_per_s),
                  flush=True)

    def write_samples(self, step):
        """The sampler's output on the fixed z: a TensorBoard image, a PNG and histograms."""
        z, y = grid_inputs(self.solver)
        pixels = to_pixels(self.solver.sampler.sample(z, y)).numpy()
        grid = files.image_grid(pixels, GRID_COLUMNS if self.solver.conditional else None)
        tf.summary.image("samples", grid[None], step=step)
        for v in (self.solver.generator.trainable_variables
                  + self.solver.discriminator.trainable_variables):
            tf.summary.histogram(v.path, v, step=step)
        files.write_png(self.run_dir.sample_png(step), grid)

    def evaluate(self, step):
        """Score the sampler, log and record the scores, and keep the checkpoint if its FID is
        the lowest so far."""
        start, sampler = time.perf_counter(), self.solver.sampler
        result = {**evaluation.score(self.evaluator, sampler, f"generated (step {step})"),
                  "step": step,
                  "generator": "trained" if sampler is self.solver.generator else "ema"}
        name = result["features"]
        is_best = result["fid"] < best_fid(self.run_dir, name)
        with self.writing(f"the scores of step {step}"):
            evaluation.record(self.run_dir, result)  # first: best_fid reads it back
            if is_best:
                path = self.checkpoints.keep_best()
                files.write_json(self.run_dir.best_json(name), {
                    "step": step, "fid": result["fid"], "checkpoint": path, "features": name})
        best_path = checkpoint.best(self.run_dir)
        best_step = checkpoint.step_of(best_path) if best_path else None
        scalars = {**evaluation.scalars(result), f"eval/best_step_{name}": best_step}
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=step)
        print(f"eval: {evaluation.summary(result)}; best so far: step {best_step} "
              f"({cli.format_duration(time.perf_counter() - start)})", flush=True)
        self.failed(step, self.watch.scores(evaluation.recorded(self.run_dir, name)),
                    everywhere=cluster(self.solver.strategy) is None)

    def failed(self, step, message, everywhere):
        """Say a failure the watch has seen, on a line and in TensorBoard; with
        stop_on_failure, save and stop, if every process has seen it (the others would wait
        for the chief in the next step's collectives)."""
        if message is None:
            return
        if self.chief:
            tf.summary.text("failure", message, step=step)
        if self.schedule.stop_on_failure and everywhere:
            path = self.save()
            raise config.ConfigError(f"stopped at step {step}, saved as "
                                     f"{path or 'the chief saves it'}: {message}")
        if self.chief:
            print(f"warning: {message}", flush=True)

    def save(self):
        step = int(self.solver.step.numpy())
        if not self.finite():  # never write a checkpoint that no run could go on from
            raise self.blown_up(step)
        with self.writing(f"the checkpoint of step {step}"):
            return self.checkpoints.save()

    @contextlib.contextmanager
    def writing(self, what):
        """A write that fails (a full disk, a file size limit, a folder that became read-only)
        stops the run with one line; the checkpoints written before stay as they are."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 (files.failure tells a failed write from the rest)
            reason = files.failure(e)
            if reason is None:
                raise
            self.checkpoints.discard_failed_save()
            raise files.WriteError(
                f"{what} in {self.run_dir.path}", reason, f"{files.ADVICE}, which resumes from "
                f"{self.checkpoints.latest or 'the start'}") from None

    def blown_up(self, step, values=None):
        """The one-line error of a run whose numbers are no longer finite."""
        what = ", ".join(f"{k} {v}" for k, v in (values or {}).items() if not math.isfinite(v))
        latest, solver = self.checkpoints.latest, self.solver
        lr = (f"{solver.d_lr:g}" if solver.d_lr == solver.g_lr else
              f"{solver.d_lr:g} for D, {solver.g_lr:g} for G")
        advice = (f"the latest checkpoint, {latest}, is from before it, and the same command "
                  f"with a smaller one (now {lr}) resumes from there" if latest else
                  f"no checkpoint was written; run again with a smaller one (now {lr})")
        return config.ConfigError(
            f"training blew up by step {step} ({what or 'a weight is nan or inf'}): {advice}",
            "lr")


def grid_inputs(solver):
    """(z, y) of the sample grid: the fixed z; in a conditional run, a row of its first
    GRID_COLUMNS for each class (or each attribute alone)."""
    if not solver.conditional:
        return solver.fixed_z, None
    arch, labels = solver.generator.arch, each_label(solver.generator.arch)
    z = tf.tile(solver.fixed_z[:GRID_COLUMNS], [len(labels), 1])
    return z, label_vector(arch, np.repeat(labels, GRID_COLUMNS, axis=0))


def best_fid(run_dir, features):
    """The FID of the run's best checkpoint through these features, from the scores written
    before it was kept (so a stop between the two can mislead nothing); inf if none."""
    path = checkpoint.best(run_dir)
    if path is None:
        return math.inf
    try:
        with open(run_dir.eval_json(checkpoint.step_of(path), features)) as f:
            return float(json.load(f)["fid"])
    except (OSError, ValueError, KeyError):  # scored through other features: not comparable
        return math.inf


def is_chief(strategy):
    """The only process, or in a multi-worker run the chief (or worker 0 when the cluster names
    no chief): the one that writes logs, samples and checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def cluster(strategy):
    """The cluster resolver of a multi-worker run; None for one process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver if resolver is not None and resolver.cluster_spec().jobs else None


class stop_requests:
    """Turns Ctrl-C and SIGTERM into a request the loop checks between steps: a signal that
    interrupts TensorFlow inside a C++ call can crash the process before anything is saved."""

    def __enter__(self):
        self.requests = []
        self.previous = {s: signal.signal(s, self.request) for s in (signal.SIGINT, signal.SIGTERM)}
        return self.requests

    def request(self, signum, frame):
        self.requests.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop now

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def stop_together(strategy, requests, checkpoints_dir):
    """(stop, agree): the list the loop stops on, and what it calls after each step.

    One process stops as soon as it is asked (stop is its requests). The workers of a
    multi-worker run must all stop after the same step, or those that go on wait forever in
    the next step's collectives. PreemptionCheckpointHandler agrees on that step: the worker
    that is asked to stop (it polls requests each second) names a step through the cluster's
    coordination service, and each worker's agree() fills stop after it. The handler saves
    nothing: the loop's own save, collective and checked, follows on every worker.
    """
    resolver = cluster(strategy)
    if resolver is None:
        return requests, lambda: None
    stop = []
    handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        resolver,
        # The handler insists on a checkpoint of its own, which it restores from a folder that
        # does not exist (so does nothing) and never writes, given a save_fn.
        tf.train.CheckpointManager(tf.train.Checkpoint(),
                                   os.path.join(checkpoints_dir, "unused"), max_to_keep=1),
        termination_config=tf.distribute.experimental.TerminationConfig(
            termination_watcher_fn=lambda: bool(requests), save_fn=lambda: None,
            exit_fn=lambda: stop.append("the cluster")))
    return stop, handler.save_checkpoint_if_preempted


def progress_line(step, max_steps, values, *, images_per_s, seconds_left):
    held = (f" (held out {values['held_out/D(x)']:.2f})" if "held_out/D(x)" in values else "")
    p = f"  p {values['augment_p']:.3f}" if "augment_p" in values else ""
    return (f"step {step}/{max_steps}  d_loss {values['d_loss']:.3f} "
            f"(real {values['d_loss_real']:.3f}, fake {values['d_loss_fake']:.3f})  "
            f"g_loss {values['g_loss']:.3f}  D(x) {values['D(x)']:.2f}{held}  "
            f"D(G(z)) {values['D(G(z))']:.2f}  r_t {values['r_t']:.2f}{p}  "
            f"{images_per_s:.0f} img/s  left {cli.format_duration(seconds_left)}")
