"""Training: the losses, the D and G updates, the tf.function train step, and the loop that logs,
samples and checkpoints into the run directory.

The step comes twice. original_step is the original's iteration, written out; the solver trains
with fast_step, which computes the same thing with one forward pass of G fewer
(tests/test_solver.py shows the two equal, step after step).
"""
import contextlib
import glob
import json
import math
import os
import shutil
import signal
import time

import keras
import tensorflow as tf

import config
from metrics import evaluation
from model import Generator, label_vector, layers_of, to_pixels
from ops import batch_norm
from utils import cli, files
from utils.run_dir import RunDir, checkpoint_step, has_ema, read_checkpoint

GRID_COLUMNS = 8  # z per row of a conditional run's sample grid, a row per class


def cross_entropy(target, logits):
    """Per-example sigmoid cross-entropy of the logits against one target value."""
    logits = tf.cast(logits, tf.float32)  # float32 losses also under mixed precision
    labels = tf.fill(tf.shape(logits), tf.cast(target, tf.float32))
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def adam(lr, beta1):
    optimizer = keras.optimizers.Adam(lr, beta_1=beta1)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # float16 gradients underflow
    return optimizer


def minimize(optimizer, tape, loss, network):
    """One step of the optimizer on the network's trainable variables only (as the original
    split its variable lists by scope). The tape must have recorded the loss; it records the
    loss scaling too, which changes nothing but under float16."""
    with tape:
        scaled_loss = optimizer.scale_loss(loss)
    variables = network.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))


def moving_averages(network):
    """[(decay, moving statistic, its value now)] for each batch norm of the network."""
    return [(bn.momentum, v, tf.convert_to_tensor(v)) for bn in layers_of(network, batch_norm)
            for v in (bn.moving_mean, bn.moving_variance)]


def repeat_moving_update(before):
    """Move each statistic again as its batch norm's last call did, as a second call on the
    same batch would: m2 = d * m1 + (1 - d) * b = m1 + d * (m1 - m0), with m0 from before."""
    for decay, v, m0 in before:
        v.assign(v + decay * (v - m0))


class Solver:
    def __init__(self, generator, discriminator, *, out_dir=None, lr=config.LR,
                 beta1=config.BETA1, g_steps=config.G_STEPS,
                 label_smoothing=config.LABEL_SMOOTHING, two_sided_smoothing=False, seed=0,
                 ema_decay=0.0, strategy=None, jit_compile=False):
        """out_dir: the run directory that logs, samples and checkpoints go to (none: the
        solver only trains). ema_decay: keep generator_ema, a moving average of the generator
        (0: none). strategy: the tf.distribute strategy the networks were built under
        (default: none)."""
        if g_steps < 1:  # the step's first G update always runs
            raise config.ConfigError(f"--g_steps must be 1 or more, not {g_steps}")
        if not 0 <= ema_decay < 1:
            raise config.ConfigError(f"--ema_decay must be in [0, 1), not {ema_decay}")
        if generator.arch != discriminator.arch:
            raise ValueError("the generator and discriminator have different architectures")
        self.generator, self.discriminator = generator, discriminator
        self.conditional = bool(generator.arch.labels)
        self.lr, self.g_steps = lr, g_steps
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)  # writes logs, samples and checkpoints
        # Label smoothing (Salimans et al. 2016): real targets 1 - s; the two-sided form also
        # lifts the fake targets from 0 to s. The generator's own target stays 1.
        self.real_target = 1.0 - label_smoothing
        self.fake_target = label_smoothing if two_sided_smoothing else 0.0
        with self.strategy.scope():
            # Two optimizers, each built on (and so only ever applied to) its own network's
            # variables, as the original split them by scope name.
            self.d_optimizer = adam(lr, beta1)
            self.g_optimizer = adam(lr, beta1)
            self.d_optimizer.build(discriminator.trainable_variables)
            self.g_optimizer.build(generator.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.seed = tf.Variable(seed, dtype=tf.int64, trainable=False)  # resumes with the run
            # One z for every sample grid, so grids from different steps show the same faces.
            self.fixed_z = tf.Variable(self.sample_z(config.NUM_SAMPLES, -1), trainable=False)
            self.ema_decay, self.generator_ema = ema_decay, None
            if ema_decay:
                self.generator_ema = Generator(generator.arch)
                for average, variable in zip(self.generator_ema.variables, generator.variables):
                    average.assign(variable)
        # Outside the strategy: a record for the checkpoint, and strings cannot be broadcast.
        self.arch = tf.Variable(generator.arch.to_json(), trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            generator=generator, discriminator=discriminator, g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer, step=self.step, seed=self.seed, fixed_z=self.fixed_z,
            arch=self.arch)
        if self.generator_ema is not None:  # a run without it keeps its checkpoints' bytes
            self.checkpoint.generator_ema = self.generator_ema
        # What the run's images come from: the average when there is one.
        self.sampler = self.generator if self.generator_ema is None else self.generator_ema
        self.run_dir = self.manager = None
        if out_dir:
            self.run_dir = RunDir(out_dir)
            self.manager = self.checkpoint_manager()
        if jit_compile:  # XLA compiles each replica's step; the cross-replica sums stay outside
            self.replica_step = tf.function(self.replica_step, jit_compile=True)

    def sample_z(self, n, step):
        """z ~ U(-1, 1), a function of (seed, step) alone: a resumed run draws the same z, and
        each replica of a distributed run takes its share of the same global batch of z."""
        return tf.random.stateless_uniform((n, self.generator.arch.z_dim),
                                           seed=(self.seed, step), minval=-1.0, maxval=1.0)

    # --- losses -------------------------------------------------------------------------------
    def mean(self, values):
        """The mean over this replica's examples over the number of replicas: summed across
        replicas, as the optimizers sum gradients, it is the mean over the global batch."""
        return tf.reduce_mean(tf.cast(values, tf.float32)) / self.strategy.num_replicas_in_sync

    def discriminator_loss(self, real_logits, fake_logits):
        return (self.mean(cross_entropy(self.real_target, real_logits)),
                self.mean(cross_entropy(self.fake_target, fake_logits)))

    def generator_loss(self, fake_logits):
        # Non-saturating: G maximises log D(G(z)) rather than minimising log(1 - D(G(z))).
        return self.mean(cross_entropy(1.0, fake_logits))

    # --- updates ------------------------------------------------------------------------------
    def d_step(self, real, fake, y=None):
        """One discriminator update. Real and fake images go through D separately, as in the
        original, so each batch norm sees batches of one kind only. y: a conditional run's label
        vectors of the real images, which the fake ones were asked for too."""
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, y, training=True)
            fake_logits = self.discriminator(fake, y, training=True)
            d_loss_real, d_loss_fake = self.discriminator_loss(real_logits, fake_logits)
            d_loss = d_loss_real + d_loss_fake
        minimize(self.d_optimizer, tape, d_loss, self.discriminator)
        return {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
                "D(x)": self.mean(tf.sigmoid(real_logits)),
                "D(G(z))": self.mean(tf.sigmoid(fake_logits))}

    def g_step(self, z, fake=None, tape=None, y=None):
        """One generator update through a discriminator in training mode, as in the original.
        fake, tape: G(z) already computed in training mode, on a tape that is still recording."""
        if fake is None:
            tape = tf.GradientTape()
            with tape:
                fake = self.generator(z, y, training=True)
        with tape:
            g_loss = self.generator_loss(self.discriminator(fake, y, training=True))
        minimize(self.g_optimizer, tape, g_loss, self.generator)
        return g_loss

    def original_step(self, real, z, y=None):
        """The original's iteration: one D update on G(z), then g_steps G updates on the same
        z, each running G forward again."""
        metrics = self.d_step(real, self.generator(z, y, training=True), y)
        for _ in range(self.g_steps):
            metrics["g_loss"] = self.g_step(z, y=y)
        return metrics

    def fast_step(self, real, z, y=None):
        """The original's iteration with one forward pass of G fewer. Its D update and its
        first G update have the same z and the same generator, so the same fake batch: G runs
        forward once, on a tape the G update goes on recording (as in pytorch/examples).

        The original's second forward pass also moved G's batch norm statistics a second time,
        by the same batch statistics; repeat_moving_update makes that move, so the sampler
        reads the statistics the original's would.
        """
        before = moving_averages(self.generator)
        tape = tf.GradientTape()
        with tape:
            fake = self.generator(z, y, training=True)
        repeat_moving_update(before)
        metrics = self.d_step(real, fake, y)
        metrics["g_loss"] = self.g_step(z, fake, tape, y)
        for _ in range(self.g_steps - 1):
            metrics["g_loss"] = self.g_step(z, y=y)
        return metrics

    def replica_step(self, real, z):
        """The fast step on this replica's share of the batch and of the global z. real: the
        images, or a conditional run's (images, labels)."""
        images, y = real if self.conditional else (real, None)
        if self.conditional:
            y = label_vector(self.generator.arch, y)
        batch = tf.shape(images)[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return self.fast_step(images, z[replica * batch:(replica + 1) * batch], y)

    @tf.function
    def train_step(self, real):
        """real: a batch, or under a strategy the per-replica parts of one global batch; a
        conditional run's batches are (images, labels)."""
        images = real[0] if self.conditional else real
        batch = tf.shape(self.strategy.experimental_local_results(images)[0])[0]  # per replica
        # The global batch of z, drawn here, outside XLA, whose random numbers differ.
        z = self.sample_z(batch * self.strategy.num_replicas_in_sync, self.step)
        metrics = self.strategy.run(self.replica_step, args=(real, z))
        if self.generator_ema is not None:
            self.update_ema()
        self.step.assign_add(1)
        return {name: self.strategy.reduce("SUM", value, axis=None)
                for name, value in metrics.items()}

    def update_ema(self):
        """generator_ema <- d * generator_ema + (1 - d) * generator, for every variable: the
        weights, and the batch norms' moving statistics too, so that each statistic is averaged
        over the same steps as the weights it normalises for.

        d is --ema_decay, but at most (1 + t) / (10 + t) after t steps, as
        tf.train.ExponentialMovingAverage's num_updates has it: else the average of a short run
        is still mostly the untrained generator it starts from (0.999^1000 = 37% of it).
        """
        t = tf.cast(self.step, tf.float32)
        d = tf.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        for average, variable in zip(self.generator_ema.variables, self.generator.variables):
            average.assign(d * average + (1.0 - d) * variable)

    # --- the loop -----------------------------------------------------------------------------
    def train(self, dataset, max_steps, *, batch_size, log_every=config.LOG_EVERY,
              sample_every=config.SAMPLE_EVERY, checkpoint_every=config.CHECKPOINT_EVERY,
              score=None, eval_every=0):
        """Train until step max_steps: each step, then now and then a log line, a sample grid
        and a checkpoint, as the original; and every eval_every steps (and at the end) the
        sampler's scores, score(generator, step) -> metrics.evaluation's result, logged with
        the checkpoint of the lowest FID kept. Returns the last checkpoint's path.

        dataset: global batches of batch_size, or under a strategy its distributed form.
        Ctrl-C (or SIGTERM) finishes the step, saves a checkpoint and raises KeyboardInterrupt,
        so the same command resumes from there; a second Ctrl-C stops at once. In a
        multi-worker run, one worker's Ctrl-C or SIGTERM stops every worker after the same step.
        """
        self.needs_run_dir()
        step = int(self.step.numpy())
        if self.chief:
            with self.writing("the TensorBoard logs"):
                self.run_dir.trim_logs(step)  # what a stopped run logged past its checkpoint
        writer = (tf.summary.create_file_writer(self.run_dir.logs) if self.chief
                  else tf.summary.create_noop_writer())
        window_step, window_time = step, time.perf_counter()
        batches = iter(dataset)
        with writer.as_default(), stop_requests() as requests:
            stop, agree = stop_together(self.strategy, requests, self.run_dir.checkpoints)
            while step < max_steps and not stop:
                metrics = self.train_step(next(batches))
                step += 1
                agree()
                if step % log_every == 0 or step == max_steps:
                    # Reading the losses waits for the step: do it only when logging.
                    values = {k: float(v) for k, v in metrics.items()}
                    if not all(map(math.isfinite, values.values())):
                        raise self.blown_up(step, values)
                    for name, value in values.items():
                        tf.summary.scalar(name, value, step=step)
                    now = time.perf_counter()
                    steps_per_s = (step - window_step) / (now - window_time)
                    window_step, window_time = step, now
                    if self.chief:
                        print(progress_line(step, max_steps, values,
                                            images_per_s=steps_per_s * batch_size,
                                            seconds_left=(max_steps - step) / steps_per_s),
                              flush=True)
                if self.chief and (step % sample_every == 0 or step == max_steps):
                    with self.writing(f"the sample grid of step {step}"):
                        self.write_samples(step)
                if score and self.chief and (step % eval_every == 0 or step == max_steps):
                    self.evaluate(score, step)
                if step % checkpoint_every == 0:
                    self.save()
        path = self.save()
        if stop:
            print(f"\ninterrupted: saved {path or f'step {step} with the chief'}; run the same "
                  "command to resume", flush=True)
            raise KeyboardInterrupt
        return path

    def grid_inputs(self):
        """(z, y) of the sample grid: the fixed z; in a conditional run, a row of its first
        GRID_COLUMNS for each class (or each attribute alone)."""
        if not self.conditional:
            return self.fixed_z, None
        y_dim = self.generator.arch.y_dim
        z = tf.tile(self.fixed_z[:GRID_COLUMNS], [y_dim, 1])
        return z, tf.repeat(tf.eye(y_dim), GRID_COLUMNS, axis=0)

    def write_samples(self, step):
        """The sampler's output on the fixed z: a TensorBoard image, a PNG and histograms."""
        z, y = self.grid_inputs()
        pixels = to_pixels(self.sampler.sample(z, y)).numpy()
        grid = files.image_grid(pixels, GRID_COLUMNS if self.conditional else None)
        tf.summary.image("samples", grid[None], step=step)
        for v in self.generator.trainable_variables + self.discriminator.trainable_variables:
            tf.summary.histogram(v.path, v, step=step)
        files.write_png(os.path.join(self.run_dir.samples, f"step_{step:07d}.png"), grid)

    def evaluate(self, score, step):
        """Score the sampler, log and record the scores, and keep the checkpoint if its FID is
        the lowest so far."""
        start = time.perf_counter()
        result = {**score(self.sampler, step), "step": step,
                  "generator": "trained" if self.sampler is self.generator else "ema"}
        name = result["features"]
        best = result["fid"] < self.best_fid(name)
        with self.writing(f"the scores of step {step}"):
            evaluation.record(self.run_dir, result)  # first: best_fid reads it back
            if best:
                path = tf.train.CheckpointManager(self.checkpoint, self.run_dir.best,
                                                  max_to_keep=1).save(checkpoint_number=step)
                files.write_json(self.run_dir.best_json(name), {
                    "step": step, "fid": result["fid"], "checkpoint": path, "features": name})
        best_step = self.best_step()
        scalars = {**evaluation.scalars(result), f"eval/best_step_{name}": best_step}
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=step)
        print(f"eval: {evaluation.summary(result)}; best so far: step {best_step} "
              f"({cli.format_duration(time.perf_counter() - start)})", flush=True)

    def best_step(self):
        """The step of the run's best checkpoint (its name, ckpt-STEP), or None."""
        path = tf.train.latest_checkpoint(self.run_dir.best)
        return checkpoint_step(path) if path else None

    def best_fid(self, features):
        """The FID of the run's best checkpoint through these features, from the scores written
        before it was kept (so a stop between the two can mislead nothing); inf if none."""
        step = self.best_step()
        if step is None:
            return math.inf
        try:
            with open(self.run_dir.eval_json(step, features)) as f:
                return float(json.load(f)["fid"])
        except (OSError, ValueError, KeyError):  # scored through other features: not comparable
            return math.inf

    # --- checkpoints --------------------------------------------------------------------------
    def restore(self):
        """Load the newest checkpoint of the run directory that reads, if it has one, and
        return its path. A newer one that does not read is named, and moved as it is to
        RUN/checkpoints/damaged/ (the run goes on under its name).

        Reads only until then: a checkpoint of another architecture is refused before anything
        is written.
        """
        self.needs_run_dir()
        path, _, damaged = self.run_dir.load_latest(self.load)
        if damaged and self.chief:
            aside = self.run_dir.set_aside(damaged, path)
            print(f"Moved the checkpoints that cannot be read to {aside}.")
            self.manager = self.checkpoint_manager()  # the list without them
        if path:
            for optimizer in (self.d_optimizer, self.g_optimizer):  # this run's --lr, not the
                optimizer.learning_rate.assign(self.lr)               # one saved with the rest
        return path

    def checkpoint_manager(self):
        """The last 3 checkpoints of the run directory, as its list records them; it writes
        nothing until the first save."""
        return tf.train.CheckpointManager(self.checkpoint, self.run_dir.checkpoints,
                                          max_to_keep=3)

    def load(self, path):
        saved, _ = read_checkpoint(path)
        if saved != self.generator.arch:
            was, now = saved.differences(self.generator.arch)
            raise config.ConfigError(
                f"the checkpoint in {self.run_dir.path} was made with {was} but this run has "
                f"{now}: pass the same settings to resume, or use another --out_dir")
        if has_ema(path) != (self.generator_ema is not None):
            raise config.ConfigError(
                f"the checkpoint in {self.run_dir.path} was made with"
                f"{'' if has_ema(path) else 'out'} --ema_decay: resume it the same way, or use "
                "another --out_dir")
        self.checkpoint.restore(path).assert_existing_objects_matched()

    @tf.function
    def finite(self):
        """Whether every weight, batch norm statistic and optimizer slot is a finite number."""
        variables = (self.generator.variables + self.discriminator.variables
                     + self.g_optimizer.variables + self.d_optimizer.variables)
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables
                              if tf.as_dtype(v.dtype).is_floating])

    def blown_up(self, step, values=None):
        """The one-line error of a run whose numbers are no longer finite."""
        what = ", ".join(f"{k} {v}" for k, v in (values or {}).items() if not math.isfinite(v))
        latest = self.manager.latest_checkpoint
        advice = (f"the latest checkpoint, {latest}, is from before it, and the same command "
                  f"with a smaller --lr (now {self.lr:g}) resumes from there" if latest else
                  f"no checkpoint was written; run again with a smaller --lr (now {self.lr:g})")
        return config.ConfigError(
            f"training blew up by step {step} ({what or 'a weight is nan or inf'}): {advice}")

    def save(self):
        self.needs_run_dir()
        step = int(self.step.numpy())
        if not self.finite():  # never write a checkpoint that no run could go on from
            raise self.blown_up(step)
        if self.chief:
            with self.writing(f"the checkpoint of step {step}"):
                return self.manager.save(checkpoint_number=step)
        # Saving is collective: every worker writes its copy, and only the chief's is kept.
        worker = self.strategy.cluster_resolver.task_id
        temp = os.path.join(self.run_dir.path, f".worker-{worker}")
        self.checkpoint.write(os.path.join(temp, "ckpt"))
        tf.io.gfile.rmtree(temp)
        return None

    @contextlib.contextmanager
    def writing(self, what):
        """A write that fails (a full disk, a file size limit, a folder that became read-only)
        stops the run with one line; the checkpoints written before stay as they are."""
        try:
            yield
        except (OSError, tf.errors.OpError) as e:
            reason = (e.strerror if isinstance(e, OSError) and e.strerror else
                      str(e).rsplit("; ", 1)[-1].split(" [Op:")[0])
            for temp in glob.glob(os.path.join(self.run_dir.checkpoints, "*_temp")):
                shutil.rmtree(temp, ignore_errors=True)  # the failed save's own leftovers
            latest = self.manager.latest_checkpoint
            raise config.ConfigError(
                f"cannot write {what} in {self.run_dir.path} ({reason}): make room (or make it "
                f"writable again) and run the same command, which resumes from "
                f"{latest or 'the start'}") from None

    def needs_run_dir(self):
        if self.run_dir is None:
            raise ValueError("this Solver was made without out_dir: it trains steps, but has "
                             "nowhere to log, sample or save")


def is_chief(strategy):
    """The only process, or in a multi-worker run the chief (or worker 0 when the cluster names
    no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


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


def stop_together(strategy, requests, checkpoints):
    """(stop, agree): the list the loop stops on, and what it calls after each step.

    One process stops as soon as it is asked (stop is its requests). The workers of a
    multi-worker run must all stop after the same step, or those that go on wait forever in
    the next step's collectives. PreemptionCheckpointHandler agrees on that step: the worker
    that is asked to stop (it polls requests each second) names a step through the cluster's
    coordination service, and each worker's agree() fills stop after it. The handler saves
    nothing: the loop's own save, collective and checked, follows on every worker.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().jobs:
        return requests, lambda: None
    stop = []
    handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        resolver,
        # The handler insists on a checkpoint of its own, which it restores from a folder that
        # does not exist (so does nothing) and never writes, given a save_fn.
        tf.train.CheckpointManager(tf.train.Checkpoint(), os.path.join(checkpoints, "unused"),
                                   max_to_keep=1),
        termination_config=tf.distribute.experimental.TerminationConfig(
            termination_watcher_fn=lambda: bool(requests), save_fn=lambda: None,
            exit_fn=lambda: stop.append("the cluster")))
    return stop, handler.save_checkpoint_if_preempted


def progress_line(step, max_steps, values, *, images_per_s, seconds_left):
    return (f"step {step}/{max_steps}  d_loss {values['d_loss']:.3f} "
            f"(real {values['d_loss_real']:.3f}, fake {values['d_loss_fake']:.3f})  "
            f"g_loss {values['g_loss']:.3f}  D(x) {values['D(x)']:.2f}  "
            f"D(G(z)) {values['D(G(z))']:.2f}  {images_per_s:.0f} img/s  "
            f"left {cli.format_duration(seconds_left)}")
