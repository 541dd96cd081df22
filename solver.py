"""Training: the tf.function train step, TensorBoard logging, sample grids, checkpoints, resume."""
import json
import math
import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import config
from model import Generator, layers_of, to_pixels
from ops import batch_norm

ARCH_KEY = "arch/.ATTRIBUTES/VARIABLE_VALUE"  # where the checkpoint keeps the architecture
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
RUN_FLAGS = "flags.json"  # train.py's flags, in the run directory


def cross_entropy(target, logits):
    """Per-example sigmoid cross-entropy of the logits against one target value."""
    logits = tf.cast(logits, tf.float32)  # float32 losses also under mixed precision
    labels = tf.fill(tf.shape(logits), tf.cast(target, tf.float32))
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def moving_averages(network):
    """[(decay, moving statistic, its value now)] for each batch norm of the network."""
    return [(bn.momentum, v, tf.convert_to_tensor(v)) for bn in layers_of(network, batch_norm)
            for v in (bn.moving_mean, bn.moving_variance)]


def repeat_moving_update(before):
    """Move each statistic again as its batch norm's last call did, as a second call on the
    same batch would: m2 = d * m1 + (1 - d) * b = m1 + d * (m1 - m0), with m0 from before."""
    for decay, v, m0 in before:
        v.assign(v + decay * (v - m0))


def adam(lr, beta1):
    optimizer = keras.optimizers.Adam(lr, beta_1=beta1)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # float16 gradients underflow
    return optimizer


class Solver:
    def __init__(self, generator, discriminator, lr=config.LR, beta1=config.BETA1,
                 g_steps=config.G_STEPS, label_smoothing=config.LABEL_SMOOTHING,
                 two_sided_smoothing=False, seed=0, strategy=None, jit_compile=False):
        """strategy: the tf.distribute strategy the networks were built under (default: none)."""
        if g_steps < 1:  # the step's first G update always runs
            raise config.ConfigError(f"--g_steps must be 1 or more, not {g_steps}")
        self.generator, self.discriminator = generator, discriminator
        self.g_steps = g_steps
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)  # writes logs, samples and checkpoints
        # Label smoothing (lab seed 002): real targets 1 - s; the two-sided form also lifts the
        # fake targets from 0 to s. The generator's own target stays 1.
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
        # Outside the strategy: a record for the checkpoint, and strings cannot be broadcast.
        arch = {**generator.arch, **discriminator.arch}
        self.arch = tf.Variable(json.dumps(arch, sort_keys=True), trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            generator=generator, discriminator=discriminator, g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer, step=self.step, seed=self.seed, fixed_z=self.fixed_z,
            arch=self.arch)
        self.manager = None
        if jit_compile:  # XLA compiles each replica's step; the cross-replica sums stay outside
            self.replica_step = tf.function(self.replica_step, jit_compile=True)

    def sample_z(self, n, step):
        """z ~ U(-1, 1), a function of (seed, step) alone: a resumed run draws the same z, and
        each replica of a distributed run takes its share of the same global batch of z."""
        return tf.random.stateless_uniform((n, self.generator.arch["z_dim"]),
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
    def generate(self, z):
        """G(z) in training mode, recorded on a tape that a G update (g_step) goes on with."""
        tape = tf.GradientTape()
        with tape:
            fake = self.generator(z, training=True)
        return fake, tape

    def d_step(self, real, fake):
        """One discriminator update. Real and fake images go through D separately, as in the
        original, so each batch norm sees batches of one kind only."""
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss_real, d_loss_fake = self.discriminator_loss(real_logits, fake_logits)
            d_loss = d_loss_real + d_loss_fake
            scaled_loss = self.d_optimizer.scale_loss(d_loss)  # unchanged but under float16
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        return {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
                "D(x)": self.mean(tf.sigmoid(real_logits)),
                "D(G(z))": self.mean(tf.sigmoid(fake_logits))}

    def g_step(self, fake, tape):
        """One generator update through a discriminator in training mode, as in the original.
        fake, tape: from generate()."""
        with tape:  # recording again, after G's forward pass
            g_loss = self.generator_loss(self.discriminator(fake, training=True))
            scaled_loss = self.g_optimizer.scale_loss(g_loss)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        return g_loss

    def replica_step(self, real, z):
        """One iteration of the original on this replica's share of the batch: one D update,
        then g_steps G updates on the same z.

        The first G update has the D update's z and generator, so the same fake batch: G runs
        forward once for both, as in pytorch/examples (the original runs it again, ~8% of the
        step). That second run would also have moved G's batch norm statistics a second time,
        by the same batch statistics; repeat_moving_update makes that move, so the step
        computes what the original computes.
        """
        batch = tf.shape(real)[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        z = z[replica * batch:(replica + 1) * batch]
        before = moving_averages(self.generator)
        fake, tape = self.generate(z)
        repeat_moving_update(before)
        metrics = self.d_step(real, fake)
        metrics["g_loss"] = self.g_step(fake, tape)
        for _ in range(self.g_steps - 1):
            metrics["g_loss"] = self.g_step(*self.generate(z))
        return metrics

    @tf.function
    def train_step(self, real):
        """real: a batch, or under a strategy the per-replica parts of one global batch."""
        batch = tf.shape(self.strategy.experimental_local_results(real)[0])[0]  # per replica
        # The global batch of z, drawn here, outside XLA, whose random numbers differ.
        z = self.sample_z(batch * self.strategy.num_replicas_in_sync, self.step)
        metrics = self.strategy.run(self.replica_step, args=(real, z))
        self.step.assign_add(1)
        return {name: self.strategy.reduce("SUM", value, axis=None)
                for name, value in metrics.items()}

    # --- checkpoints --------------------------------------------------------------------------
    def restore(self, out_dir):
        """Load the run directory's latest checkpoint, if it has one, and return its path.

        Reads only: a checkpoint of another architecture is refused before anything is written.
        """
        self.out_dir = out_dir
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(out_dir, "checkpoints"), max_to_keep=3)
        path = self.manager.latest_checkpoint
        if path is None:
            return None
        try:
            saved = json.loads(tf.train.load_checkpoint(path).get_tensor(ARCH_KEY))
        except (tf.errors.OpError, ValueError) as e:
            raise config.ConfigError(
                f"cannot read checkpoint {path} ({type(e).__name__}): "
                "use another --out_dir, or delete that run directory to start over") from None
        wanted = json.loads(self.arch.numpy())
        differ = [k for k in sorted(wanted) if saved.get(k) != wanted[k]]
        if differ:
            def settings(arch):
                return ", ".join(f"{k}={arch.get(k)}" for k in differ)
            raise config.ConfigError(
                f"the checkpoint in {out_dir} was made with {settings(saved)} but this run has "
                f"{settings(wanted)}: pass the same settings to resume, or use another --out_dir")
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self):
        if self.chief:
            return self.manager.save(checkpoint_number=int(self.step.numpy()))
        # Saving is collective: every worker writes its copy, and only the chief's is kept.
        temp = os.path.join(self.out_dir, f".worker-{self.strategy.cluster_resolver.task_id}")
        self.checkpoint.write(os.path.join(temp, "ckpt"))
        tf.io.gfile.rmtree(temp)
        return None

    # --- the loop -----------------------------------------------------------------------------
    def train(self, dataset, out_dir, max_steps, batch_size, log_every=config.LOG_EVERY,
              sample_every=config.SAMPLE_EVERY, checkpoint_every=config.CHECKPOINT_EVERY):
        """Train until step max_steps, writing logs, samples and checkpoints under out_dir.

        dataset: global batches, or under a strategy its distributed form. Ctrl-C (or SIGTERM)
        finishes the step, saves a checkpoint and raises KeyboardInterrupt, so the same command
        resumes from there; a second Ctrl-C stops at once.
        """
        writer = (tf.summary.create_file_writer(os.path.join(out_dir, "logs")) if self.chief
                  else tf.summary.create_noop_writer())
        step = int(self.step.numpy())
        window_step, window_time = step, time.perf_counter()
        batches = iter(dataset)
        with writer.as_default(), stop_requests() as stop:
            while step < max_steps and not stop:
                metrics = self.train_step(next(batches))
                step += 1
                if step % log_every == 0 or step == max_steps:
                    # Reading the losses waits for the step: do it only when logging.
                    values = {k: float(v) for k, v in metrics.items()}
                    for name, value in values.items():
                        tf.summary.scalar(name, value, step=step)
                    now = time.perf_counter()
                    steps_per_s = (step - window_step) / (now - window_time)
                    window_step, window_time = step, now
                    if self.chief:
                        print(progress_line(step, max_steps, values, steps_per_s * batch_size,
                                            (max_steps - step) / steps_per_s), flush=True)
                if self.chief and (step % sample_every == 0 or step == max_steps):
                    self.write_samples(out_dir, step)
                if step % checkpoint_every == 0:
                    self.save()
        path = self.save()
        if stop:
            print(f"\ninterrupted: saved {path}; run the same command to resume", flush=True)
            raise KeyboardInterrupt
        return path

    def write_samples(self, out_dir, step):
        """The sampler's output on the fixed z: a TensorBoard image, a PNG and histograms."""
        grid = image_grid(to_pixels(self.generator.sample(self.fixed_z)).numpy())
        tf.summary.image("samples", grid[None], step=step)
        for v in self.generator.trainable_variables + self.discriminator.trainable_variables:
            tf.summary.histogram(v.path, v, step=step)
        save_png(grid, os.path.join(out_dir, "samples", f"step_{step:07d}.png"))


def load_generator(out_dir, checkpoint=None):
    """The generator of a run directory's latest checkpoint (or of checkpoint), and its step.

    Built from the architecture the checkpoint records, so no training flag has to be repeated.
    """
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    if path is None:
        raise config.ConfigError(f"no checkpoint in {os.path.join(out_dir, 'checkpoints')}: train "
                                 f"first (python train.py --out_dir {out_dir}) or pass --checkpoint")
    try:
        reader = tf.train.load_checkpoint(path)
        arch = json.loads(reader.get_tensor(ARCH_KEY))
        step = int(reader.get_tensor(STEP_KEY))
    except (tf.errors.OpError, ValueError) as e:
        raise config.ConfigError(f"cannot read checkpoint {path} ({type(e).__name__}): "
                                 "pass a checkpoint that train.py wrote") from None
    generator = Generator(arch["image_size"], arch["channels"], arch["z_dim"], arch["gf_dim"],
                          arch["kernel_size"])
    status = tf.train.Checkpoint(generator=generator).restore(path).expect_partial()
    try:
        status.assert_existing_objects_matched()  # every generator variable came from the file
    except AssertionError:
        raise config.ConfigError(f"checkpoint {path} does not hold this project's generator "
                                 "(made by another version of the code?): train a new run") from None
    return generator, step


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


def progress_line(step, max_steps, values, images_per_s, seconds_left):
    return (f"step {step}/{max_steps}  d_loss {values['d_loss']:.3f} "
            f"(real {values['d_loss_real']:.3f}, fake {values['d_loss_fake']:.3f})  "
            f"g_loss {values['g_loss']:.3f}  D(x) {values['D(x)']:.2f}  "
            f"D(G(z)) {values['D(G(z))']:.2f}  {images_per_s:.0f} img/s  "
            f"left {format_duration(seconds_left)}")


def format_duration(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def image_grid(pixels, cols=None):
    """uint8 [N, H, W, C] -> one uint8 image, rows of cols images (default: a near-square grid),
    the last row padded with black."""
    n, h, w, c = pixels.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pixels = np.concatenate([pixels, np.zeros((rows * cols - n, h, w, c), np.uint8)])
    return pixels.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def save_png(grid, path):
    """Write atomically, so a reader never sees half a PNG."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(tmp, format="PNG")
    os.replace(tmp, path)


def save_json(values, path):
    """Write atomically, as save_png."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
