"""A run's checkpoints: what each holds, writing them, finding the newest that reads, and the
generator read back from one. No other module names what is inside a checkpoint.

Each checkpoint is a tf.train.Checkpoint, written by tf.train.CheckpointManager as
RUN/checkpoints/ckpt-STEP (the last KEEP of them kept), and holds:

    generator, discriminator    the networks, their batch norm statistics included
    g_optimizer, d_optimizer    Adam's moments and iteration counts (a resumed run takes the
                                learning rate of its own command, not the one saved)
    step, seed, fixed_z         where the run stands, the seed of its z, the sample grid's z
    arch                        the Architecture as JSON: a reader rebuilds the generator from
                                it alone, and a resumed run must have the same
    data                        the Position as JSON: which images, in batches of what size,
                                and how far the run has read them (train.py's runs)
    generator_ema               the moving average of the generator, in a run that keeps one
                                (a run without it keeps the checkpoints it always had)
    augment_p                   ADA's augmentation probability, in a run that adapts it (a
                                run that turns ADA on when resumed starts it at 0)

RUN/checkpoints/best/ holds one more: the checkpoint of the lowest FID so far.
"""
import dataclasses
import glob
import json
import os
import shutil

import tensorflow as tf
from google.protobuf import text_format

import config
from model import Architecture, Discriminator, Generator
from utils import files

KEEP = 3
EMA = "generator_ema"
ADA_P = "augment_p"
EMA_HELP = ("use the run's moving average of the generator (train.py --ema_decay) when it has "
            "one; --noema: the generator as trained")
# What reading a damaged checkpoint raises: a damaged index or a missing file (OpError), a
# truncated data file (IndexError), a record that is not ours (ValueError, TypeError), a variable
# missing from the file (AssertionError).
DAMAGE = (tf.errors.OpError, IndexError, ValueError, TypeError, AssertionError)


class Damaged(config.ConfigError):
    """A checkpoint that cannot be read; reason: what reading it raised."""

    def __init__(self, message, reason):
        super().__init__(message, "checkpoint")
        self.reason = reason


def value(name):
    """Where a checkpoint keeps the value of one of its variables."""
    return f"{name}/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class Position:
    """What each step reads and does, and how far the run has read: a run resumed with other
    images, batches of another size or another number of G updates per step is not the run
    that stopped."""
    dataset: str  # the images' name
    count: int  # images in an epoch
    batch_size: int
    g_steps: int
    image: int = 0  # images read so far (the first of the next step's batch), across epochs

    def changes(self, other):
        """The fields, but image, in which other differs."""
        return [f.name for f in dataclasses.fields(self)
                if f.name != "image" and getattr(self, f.name) != getattr(other, f.name)]


def read_position(path):
    """The Position a checkpoint records, or None (made without one)."""
    names = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    if "data" not in names:
        return None
    text = tf.train.load_checkpoint(path).get_tensor(value("data"))
    return Position(**json.loads(text))


def read_record(path):
    """(architecture, step) that a checkpoint records, read without building anything."""
    try:
        reader = tf.train.load_checkpoint(path)
        return (Architecture.from_json(reader.get_tensor(value("arch"))),
                int(reader.get_tensor(value("step"))))
    except DAMAGE as e:
        raise Damaged(f"cannot read checkpoint {path} ({type(e).__name__}): pass a checkpoint "
                      "that train.py wrote, or start a new run", type(e).__name__) from None


def holds(path, name):
    """Whether the checkpoint holds the object of that name."""
    return any(key.startswith(name + "/") for key, _ in tf.train.list_variables(path))


def has_ema(path):
    """Whether the checkpoint holds a moving average of the generator."""
    return holds(path, EMA)


def step_of(path):
    """The step in a checkpoint's name, ckpt-STEP."""
    return int(path.rsplit("-", 1)[1])


def newest_first(run_dir):
    """The checkpoints that the run's checkpoint list names, newest first."""
    state = tf.train.get_checkpoint_state(run_dir.checkpoints)
    return list(reversed(state.all_model_checkpoint_paths)) if state else []


def best(run_dir):
    """The run's checkpoint of the lowest FID, or None."""
    return tf.train.latest_checkpoint(run_dir.best)


def kept(run_dir):
    """Every checkpoint the run keeps, its best one too, oldest first."""
    paths = newest_first(run_dir)
    best_path = best(run_dir)
    if best_path and os.path.basename(best_path) not in map(os.path.basename, paths):
        paths.append(best_path)
    return sorted(paths, key=step_of)


def load_latest(run_dir, load, attempts=5):
    """(path, load(path), damaged) for the newest checkpoint that load() can read, or
    (None, None, []) when the run has none; damaged lists the newer ones that cannot be
    read, each named on stdout and left as it is. A run none of whose checkpoints reads is
    one line. load raises Damaged, or one of DAMAGE, for a checkpoint it cannot read.

    A checkpoint that a train.py still running on the run has meanwhile rotated away is not
    damaged: the list is read again (attempts times at most) and the newest tried again."""
    damaged = []
    for path in newest_first(run_dir):
        try:
            return path, load(path), damaged
        except Damaged as e:
            reason = e.reason
        except config.ConfigError:  # readable, but refused (another architecture)
            raise
        except DAMAGE as e:
            reason = type(e).__name__
        if attempts > 1 and path not in newest_first(run_dir):
            return load_latest(run_dir, load, attempts - 1)
        print(f"checkpoint {path} cannot be read ({reason}): it stays as it is; trying the "
              "one before it", flush=True)
        damaged.append(path)
    if damaged:
        raise config.ConfigError(
            f"no checkpoint in {run_dir.checkpoints} can be read (the files stay as they are): "
            "copy back a good one, or choose another run directory to start over", "out_dir")
    return None, None, []


def set_aside(run_dir, damaged, kept_path):
    """Move the files of the damaged checkpoints, as they are, to RUN/checkpoints/damaged/,
    and make the checkpoint list end at kept_path: the run saves its next checkpoints under
    names the damaged ones had, and must not overwrite them."""
    aside = os.path.join(run_dir.checkpoints, "damaged")
    os.makedirs(aside, exist_ok=True)
    for path in damaged:
        for file in glob.glob(glob.escape(path) + ".*"):
            os.replace(file, os.path.join(aside, os.path.basename(file)))
    state = tf.train.get_checkpoint_state(run_dir.checkpoints)
    kept_ones = [(os.path.basename(p), t) for p, t in zip(
        state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps)
        if p not in damaged]
    del state.all_model_checkpoint_paths[:], state.all_model_checkpoint_timestamps[:]
    state.model_checkpoint_path = os.path.basename(kept_path)
    state.all_model_checkpoint_paths.extend(p for p, _ in kept_ones)
    state.all_model_checkpoint_timestamps.extend(t for _, t in kept_ones)
    files.write_text(os.path.join(run_dir.checkpoints, "checkpoint"),
                     text_format.MessageToString(state))
    return aside


class Checkpoints:
    """The checkpoints of one Solver's training in one run directory. chief: this process
    writes them (the other workers of a multi-worker run take part in each save and keep
    nothing). position: what the run reads (images, epoch size, batch size, G steps), which
    each checkpoint records with how far the run has read; None: no record."""

    def __init__(self, solver, run_dir, chief=True, position=None):
        self.solver, self.run_dir, self.chief = solver, run_dir, chief
        self.position = position
        # Made outside any strategy's scope: strings cannot be broadcast to replicas.
        self.arch = tf.Variable(solver.generator.arch.to_json(), trainable=False)
        self.data = tf.Variable("", trainable=False)
        self.checkpoint = self.contents(with_position=position is not None)
        self.manager = self.list_manager()
        self.restored, self.damaged, self.saved = None, [], None
        self.start = (0, 0)  # (step, image) this process starts from

    def contents(self, with_position, with_ada=True):
        """The tf.train.Checkpoint of the solver's objects, by the names above."""
        solver = self.solver
        checkpoint = tf.train.Checkpoint(
            generator=solver.generator, discriminator=solver.discriminator,
            g_optimizer=solver.g_optimizer, d_optimizer=solver.d_optimizer, step=solver.step,
            seed=solver.seed, fixed_z=solver.fixed_z, arch=self.arch)
        if with_position:
            checkpoint.data = self.data
        if solver.generator_ema is not None:
            checkpoint.generator_ema = solver.generator_ema
        if solver.ada_target is not None and with_ada:
            setattr(checkpoint, ADA_P, solver.augment_p)
        return checkpoint

    def list_manager(self):
        """CheckpointManager of the run's list; it writes nothing until the first save."""
        return tf.train.CheckpointManager(self.checkpoint, self.run_dir.checkpoints,
                                          max_to_keep=KEEP)

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore(self):
        """Load the newest checkpoint of the run that reads, if it has one, and return its
        path; self.saved is the Position it records. The newer ones that do not read are named,
        and kept in self.damaged for set_aside_damaged once the run directory is this run's to
        write. Reads only: a checkpoint of another architecture is refused with nothing
        written."""
        self.restored, _, self.damaged = load_latest(self.run_dir, self.load)
        if self.restored:
            self.solver.d_optimizer.learning_rate.assign(self.solver.d_lr)
            self.solver.g_optimizer.learning_rate.assign(self.solver.g_lr)
            step = int(self.solver.step.numpy())
            # A run made before checkpoints recorded it had read step x batch size images.
            self.start = (step, self.saved.image if self.saved else
                          step * (self.position.batch_size if self.position else 0))
        return self.restored

    def load(self, path):
        saved, _ = read_record(path)
        arch = self.solver.generator.arch
        if saved != arch:
            was, now = saved.differences(arch)
            raise config.ConfigError(
                f"the checkpoint in {self.run_dir.path} was made with {was} but this run has "
                f"{now}: pass the same settings to resume it, or choose another run directory",
                "out_dir")
        if has_ema(path) != (self.solver.generator_ema is not None):
            raise config.ConfigError(
                f"the checkpoint in {self.run_dir.path} was made with"
                f"{'' if has_ema(path) else 'out'} a moving average of the generator: resume it "
                "the same way, or choose another run directory", "ema_decay")
        # A run whose checkpoints record no position goes on without (as with the average).
        self.saved = read_position(path)
        with_position = self.position is not None and self.saved is not None
        self.contents(with_position, holds(path, ADA_P)).restore(
            path).assert_existing_objects_matched()
        self.checkpoint = self.contents(with_position)
        self.manager = self.list_manager()

    def next_image(self):
        """The image the next step's batch starts at: where the run started in this process,
        and a batch for each step since."""
        step, image = self.start
        return image + (int(self.solver.step.numpy()) - step) * self.position.batch_size

    def set_aside_damaged(self):
        """Move the checkpoints that restore could not read to RUN/checkpoints/damaged/, and
        return that folder (None if there were none)."""
        if not (self.damaged and self.chief):
            return None
        aside = set_aside(self.run_dir, self.damaged, self.restored)
        self.manager, self.damaged = self.list_manager(), []
        return aside

    def save(self):
        """Save the solver at its step; the chief's path, None on the other workers."""
        step = int(self.solver.step.numpy())
        if self.position is not None:
            position = dataclasses.replace(self.position, image=self.next_image())
            self.data.assign(json.dumps(dataclasses.asdict(position), sort_keys=True))
        if self.chief:
            return self.manager.save(checkpoint_number=step)
        # Saving is collective: every worker writes its copy, and only the chief's is kept.
        worker = self.solver.strategy.cluster_resolver.task_id
        temp = os.path.join(self.run_dir.path, f".worker-{worker}")
        self.checkpoint.write(os.path.join(temp, "ckpt"))
        tf.io.gfile.rmtree(temp)
        return None

    def keep_best(self):
        """Keep the solver at its step as the run's best checkpoint, in place of the last."""
        return tf.train.CheckpointManager(self.checkpoint, self.run_dir.best, max_to_keep=1).save(
            checkpoint_number=int(self.solver.step.numpy()))

    def discard_failed_save(self):
        """Remove what a save that failed half-way left (CheckpointManager writes under a
        temporary name, NAME_temp, and renames when whole)."""
        for temp in glob.glob(os.path.join(self.run_dir.checkpoints, "*_temp")):
            shutil.rmtree(temp, ignore_errors=True)


# --- the generator, read back --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A generator read from a checkpoint."""
    generator: Generator
    step: int
    path: str  # the checkpoint
    ema: bool  # whether it is the checkpoint's moving average of the generator

    def describe(self):
        kind = "the moving average of the generator" if self.ema else "the generator"
        return f"{kind} at step {self.step}"


def read_network(path, name):
    """(network, step): the network a checkpoint holds under name (generator, generator_ema or
    discriminator), built from the architecture it records (no training flag is repeated)."""
    arch, step = read_record(path)
    network = (Discriminator if name == "discriminator" else Generator)(arch)
    try:
        status = tf.train.Checkpoint(**{name: network}).restore(path).expect_partial()
        status.assert_existing_objects_matched()  # every variable of it came from the file
    except DAMAGE as e:
        raise Damaged(f"checkpoint {path} does not hold this project's {name} whole "
                      f"({type(e).__name__}): pass another, or train a new run",
                      type(e).__name__) from None
    return network, step


def read_generator(path, ema=True):
    """The Snapshot of one checkpoint: its moving average of the generator when it has one and
    ema is true, else the generator as trained."""
    ema = ema and has_ema(path)
    generator, step = read_network(path, EMA if ema else "generator")
    return Snapshot(generator, step, path, ema)


def load(run_dir, checkpoint, read):
    """read(checkpoint), else read() of the run's newest checkpoint that reads. checkpoint
    "best": the run's checkpoint of the lowest FID."""
    if checkpoint == "best":
        checkpoint = best(run_dir)
        if checkpoint is None:
            raise config.ConfigError(
                f"{run_dir.path} has no best checkpoint: train.py keeps one when it evaluates "
                f"as it trains (python train.py --out_dir {run_dir.path} --eval_every N, and "
                "--max_steps past the run's step)", "checkpoint")
    if checkpoint:
        return read(checkpoint)
    _, loaded, _ = load_latest(run_dir, read)
    if loaded is None:
        raise config.ConfigError(f"no checkpoint in {run_dir.checkpoints}: train first (python "
                                 f"train.py --out_dir {run_dir.path}), or name one",
                                 "checkpoint")
    return loaded


def load_generator(run_dir, checkpoint=None, ema=True):
    """The Snapshot of checkpoint, else of the run's newest checkpoint that reads (see load);
    its moving average of the generator when it has one and ema is true."""
    return load(run_dir, checkpoint, lambda path: read_generator(path, ema))


def load_discriminator(run_dir, checkpoint=None):
    """(discriminator, step, path) of checkpoint, else of the run's newest that reads."""
    return load(run_dir, checkpoint,
                lambda path: (*read_network(path, "discriminator"), path))
