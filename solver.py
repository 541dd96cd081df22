"""The algorithm: z, the losses, the D and G updates, the tf.function train step, and the
generator's moving average. For few images (all off by default, the original's recipe): the
hinge loss, each network's own learning rate, and the images D judges augmented (augment.py)
with ADA's adaptive probability; and D judged on images it never trained on, to watch it
overfit. What is done with it (the loop that logs, samples, scores and saves)
is training/loop.py's.

The step comes twice. original_step is the original's iteration, written out; fast_step computes
the same thing with one forward pass of G fewer, and is what train_step runs
(tests/test_solver.py runs the two side by side and finds them equal, step after step).
"""
import keras
import tensorflow as tf

import augment
import config
from model import Generator, label_vector, layers_of
from ops import batch_norm


def cross_entropy(target, logits):
    """Per-example sigmoid cross-entropy of the logits against one target value."""
    logits = tf.cast(logits, tf.float32)  # float32 losses also under mixed precision
    labels = tf.fill(tf.shape(logits), tf.cast(target, tf.float32))
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def hinge(sign, logits):
    """Per-example hinge loss max(0, 1 - sign * logit) (Lim & Ye 2017; Miyato et al. 2018):
    D is done with an example once it is on the right side by a margin of 1."""
    return tf.nn.relu(1.0 - sign * tf.cast(logits, tf.float32))


LOSSES = ("cross_entropy", "hinge")


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
    def __init__(self, generator, discriminator, *, lr=config.LR, beta1=config.BETA1,
                 g_steps=config.G_STEPS, label_smoothing=config.LABEL_SMOOTHING,
                 two_sided_smoothing=False, seed=0, ema_decay=0.0, strategy=None,
                 jit_compile=False, d_lr=None, g_lr=None, loss="cross_entropy", policy=(),
                 ada_target=None, ada_kimg=None):
        """ema_decay: keep generator_ema, a moving average of the generator (0: none).
        strategy: the tf.distribute strategy the networks were built under (default: none).
        d_lr, g_lr: each network's own learning rate (TTUR, Heusel et al. 2017; None: lr).
        loss: "cross_entropy" (the original's) or "hinge". policy: the augmentations of the
        images D sees (augment.POLICIES), each applied with probability p, which ada_target
        adapts (ADA) when given and is 1 when not, moving it from 0 to 1 in ada_kimg thousand
        real images at the fastest (None: ADA's augment.ADA_KIMG)."""
        if g_steps < 1:  # the step's first G update always runs
            raise config.ConfigError(f"must be 1 or more, not {g_steps}", "g_steps")
        if not 0 <= ema_decay < 1:
            raise config.ConfigError(f"must be in [0, 1), not {ema_decay}", "ema_decay")
        if generator.arch != discriminator.arch:
            raise ValueError("the generator and discriminator have different architectures")
        self.generator, self.discriminator = generator, discriminator
        self.conditional = bool(generator.arch.labels)
        if loss not in LOSSES:
            raise config.ConfigError(f"must be one of {', '.join(LOSSES)}, not {loss!r}", "loss")
        if loss == "hinge" and (label_smoothing or two_sided_smoothing):
            raise config.ConfigError("has no meaning under the hinge loss, whose targets are "
                                     "margins, not probabilities: leave it at 0",
                                     "label_smoothing")
        if ada_target is not None and not policy:
            raise config.ConfigError("adapts how often the augmentations are applied: name "
                                     "them with --augment too", "ada_target")
        if ada_target is not None and not 0 < ada_target < 1:
            raise config.ConfigError(f"must be in (0, 1), not {ada_target}", "ada_target")
        if ada_kimg is not None and ada_target is None:
            raise config.ConfigError("sets how fast ADA adapts: turn ADA on with --ada_target "
                                     "too", "ada_kimg")
        if ada_kimg is not None and not ada_kimg > 0:
            raise config.ConfigError(f"must be above 0, not {ada_kimg}", "ada_kimg")
        self.d_lr, self.g_lr = d_lr or lr, g_lr or lr
        self.g_steps, self.loss = g_steps, loss
        self.policy, self.ada_target = augment.check_policy(policy), ada_target
        self.ada_kimg = augment.ADA_KIMG if ada_kimg is None else ada_kimg
        self.strategy = strategy or tf.distribute.get_strategy()
        # Label smoothing (Salimans et al. 2016): real targets 1 - s; the two-sided form also
        # lifts the fake targets from 0 to s. The generator's own target stays 1.
        self.real_target = 1.0 - label_smoothing
        self.fake_target = label_smoothing if two_sided_smoothing else 0.0
        with self.strategy.scope():
            # Two optimizers, each built on (and so only ever applied to) its own network's
            # variables, as the original split them by scope name.
            self.d_optimizer = adam(self.d_lr, beta1)
            self.g_optimizer = adam(self.g_lr, beta1)
            self.d_optimizer.build(discriminator.trainable_variables)
            self.g_optimizer.build(generator.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.seed = tf.Variable(seed, dtype=tf.int64, trainable=False)  # resumes with the run
            # ADA's p starts at 0 (no augmentation until D overfits); a fixed policy's is 1.
            self.augment_p = tf.Variable(0.0 if ada_target is not None else 1.0,
                                         trainable=False)
            # One z for every sample grid, so grids from different steps show the same faces.
            self.fixed_z = tf.Variable(self.sample_z(config.NUM_SAMPLES, -1), trainable=False)
            self.ema_decay, self.generator_ema = ema_decay, None
            if ema_decay:
                self.generator_ema = Generator(generator.arch)
                for average, variable in zip(self.generator_ema.variables, generator.variables):
                    average.assign(variable)
        # What the run's images come from: the average when there is one.
        self.sampler = self.generator if self.generator_ema is None else self.generator_ema
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
        if self.loss == "hinge":
            return self.mean(hinge(1.0, real_logits)), self.mean(hinge(-1.0, fake_logits))
        return (self.mean(cross_entropy(self.real_target, real_logits)),
                self.mean(cross_entropy(self.fake_target, fake_logits)))

    def generator_loss(self, fake_logits):
        if self.loss == "hinge":  # G raises D's logit on its images, without a margin
            return -self.mean(fake_logits)
        # Non-saturating: G maximises log D(G(z)) rather than minimising log(1 - D(G(z))).
        return self.mean(cross_entropy(1.0, fake_logits))

    def seen(self, images, call):
        """The images as D sees them: augmented by the policy, each call of the step (0: the
        real batch, 1: the fake one, 2 + k: the k-th G update's) with a seed of its own, a
        function of (seed, step, call): resumed runs and both steps agree. Each replica takes
        its rows of the global batch's draws, as it takes its z."""
        if not self.policy:
            return images
        batch = tf.shape(images)[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(tf.stack([self.seed, self.step]), call)
        return augment.augment(images, self.policy, seed,
                               None if self.ada_target is None else self.augment_p,
                               first=replica * batch,
                               total=batch * self.strategy.num_replicas_in_sync)

    # --- updates ------------------------------------------------------------------------------
    def d_step(self, real, fake, y=None):
        """One discriminator update. Real and fake images go through D separately, as in the
        original, so each batch norm sees batches of one kind only. y: a conditional run's label
        vectors of the real images, which the fake ones were asked for too."""
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(self.seen(real, 0), y, training=True)
            fake_logits = self.discriminator(self.seen(fake, 1), y, training=True)
            d_loss_real, d_loss_fake = self.discriminator_loss(real_logits, fake_logits)
            d_loss = d_loss_real + d_loss_fake
        minimize(self.d_optimizer, tape, d_loss, self.discriminator)
        return {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
                "D(x)": self.mean(tf.sigmoid(real_logits)),
                "D(G(z))": self.mean(tf.sigmoid(fake_logits)),
                # ADA's overfitting gauge: 0 when D cannot tell, 1 when sure of every real image
                "r_t": self.mean(tf.sign(tf.cast(real_logits, tf.float32)))}

    def g_step(self, z, fake=None, tape=None, y=None, k=0):
        """One generator update through a discriminator in training mode, as in the original.
        fake, tape: G(z) already computed in training mode, on a tape that is still recording.
        k: which of the step's G updates it is."""
        if fake is None:
            tape = tf.GradientTape()
            with tape:
                fake = self.generator(z, y, training=True)
        with tape:
            g_loss = self.generator_loss(
                self.discriminator(self.seen(fake, 2 + k), y, training=True))
        minimize(self.g_optimizer, tape, g_loss, self.generator)
        return g_loss

    def original_step(self, real, z, y=None):
        """The original's iteration: one D update on G(z), then g_steps G updates on the same
        z, each running G forward again."""
        metrics = self.d_step(real, self.generator(z, y, training=True), y)
        for k in range(self.g_steps):
            metrics["g_loss"] = self.g_step(z, y=y, k=k)
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
        for k in range(1, self.g_steps):
            metrics["g_loss"] = self.g_step(z, y=y, k=k)
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
        metrics = {name: self.strategy.reduce("SUM", value, axis=None)
                   for name, value in metrics.items()}
        if self.policy:
            metrics["augment_p"] = tf.convert_to_tensor(self.augment_p)  # this step's
        if self.ada_target is not None:
            self.augment_p.assign(augment.adjust(self.augment_p, metrics["r_t"],
                                                 self.ada_target, tf.cast(batch, tf.float32)
                                                 * self.strategy.num_replicas_in_sync,
                                                 self.ada_kimg))
        if self.generator_ema is not None:
            self.update_ema()
        self.step.assign_add(1)
        return metrics

    @tf.function
    def held_out(self, images, y=None):
        """(r_t, D(x)) of real images D never trained on, each replica judging all of them in
        training mode, as the step judges its batch; its batch norm statistics are put back, so
        watching changes nothing in the run. Beside the step's r_t and D(x), a gap that grows
        is D learning its training images by heart (Karras et al. 2020, figure 1)."""
        def judge(images, y):
            before = moving_averages(self.discriminator)
            logits = tf.cast(self.discriminator(images, y, training=True), tf.float32)
            for _, v, value in before:
                v.assign(value)
            return tf.reduce_mean(tf.sign(logits)), tf.reduce_mean(tf.sigmoid(logits))
        if self.conditional:
            y = label_vector(self.generator.arch, y)
        return [self.strategy.reduce("MEAN", value, axis=None)
                for value in self.strategy.run(judge, args=(images, y))]

    def update_ema(self):
        """generator_ema <- d * generator_ema + (1 - d) * generator, for every variable: the
        weights, and the batch norms' moving statistics too, so that each statistic is averaged
        over the same steps as the weights it normalises for.

        d is ema_decay, but at most (1 + t) / (10 + t) after t steps, as
        tf.train.ExponentialMovingAverage's num_updates has it: else the average of a short run
        is still mostly the untrained generator it starts from (0.999^1000 = 37% of it).
        """
        t = tf.cast(self.step, tf.float32)
        d = tf.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        for average, variable in zip(self.generator_ema.variables, self.generator.variables):
            average.assign(d * average + (1.0 - d) * variable)
