"""Train a DCGAN.

    python train.py --dataset mnist     # 5,000 bundled digits, no download
    python train.py --dataset celeba    # after ./download.sh and python prepro.py

Logs, sample grids and checkpoints go to --out_dir (default runs/DATASET); running the same
command again resumes from its latest checkpoint.

check() builds the run from the flags (the images, the networks, the solver, the checkpoint to
resume, the scores' feature network) and so checks all it can before anything is written; then
training/loop.py takes the run directory and trains.
"""
import dataclasses
import json
import os
import sys

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import keras
import tensorflow as tf
from absl import flags

import augment
import config
import data
from metrics import evaluation, precision_recall
from model import Architecture, Discriminator, Generator, count_params
from solver import LOSSES, Solver
from training import checkpoint, loop
from training.run_dir import RunDir
from utils import cli

FLAGS = flags.FLAGS
FLAG_NAMES = {"features": "eval_features"}  # settings whose flag here has another name


@dataclasses.dataclass
class Run:
    """A run built from the flags and checked, with nothing of it written yet."""
    solver: Solver
    checkpoints: checkpoint.Checkpoints
    images: data.Data
    schedule: loop.Schedule
    evaluator: evaluation.Evaluator  # None: no scores while training
    description: str  # the run in one line, printed before it starts
    flags: dict  # what flags.json records: the flags, the image size, the architecture


def check_flags():
    positive = ["batch_size", "z_dim", "g_steps", "kernel_size", "gf_dim", "df_dim",
                "log_every", "sample_every", "checkpoint_every", "max_steps", "epochs", "image_size",
                "crop", "max_images"]
    for name in positive:
        value = FLAGS[name].value
        if value is not None and value <= 0:
            raise config.ConfigError(f"--{name} must be a positive number, not {value}")
    if FLAGS.eval_every is not None and FLAGS.eval_every < 0:
        raise config.ConfigError(f"--eval_every must be 0 (no scores) or more, not "
                                 f"{FLAGS.eval_every}")
    if FLAGS.eval_samples <= precision_recall.K:
        raise config.ConfigError(f"--eval_samples must be at least {precision_recall.K + 1}, not "
                                 f"{FLAGS.eval_samples}")
    for name in ("lr", "d_lr", "g_lr"):
        if FLAGS[name].value is not None and not FLAGS[name].value > 0:
            raise config.ConfigError(f"--{name} must be a positive number, not "
                                     f"{FLAGS[name].value}")
    if not 0 <= FLAGS.beta1 < 1:
        raise config.ConfigError(f"--beta1 must be in [0, 1), not {FLAGS.beta1}")
    if not 0 <= FLAGS.label_smoothing < 0.5:
        raise config.ConfigError(f"--label_smoothing must be in [0, 0.5), not {FLAGS.label_smoothing}")


def make_strategy(name):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()  # every local GPU, or the CPU when there is none
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise config.ConfigError("--strategy multi_worker needs TF_CONFIG on every machine "
                                     "(see README, 'Several machines')")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def devices():
    """(strategy, precision, jit_compile) as the flags ask, the precision set as Keras' policy
    (before the networks are built)."""
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    precision = FLAGS.mixed_precision
    if precision == "auto":
        precision = "mixed_float16" if on_gpu else "float32"
    keras.mixed_precision.set_global_policy(precision)
    strategy = make_strategy(FLAGS.strategy)
    if FLAGS.batch_size % strategy.num_replicas_in_sync:
        raise config.ConfigError(f"--batch_size {FLAGS.batch_size} must split evenly across "
                                 f"{strategy.num_replicas_in_sync} replicas")
    return strategy, precision, on_gpu if FLAGS.jit_compile is None else FLAGS.jit_compile


def scorer(images, arch, eval_every, features):
    """The Evaluator of --eval_samples generated against as many of the run's real images,
    through the feature network so named; their statistics are computed (or read from the
    cache) now."""
    batch_size = min(evaluation.BATCH_SIZE, images.count)
    try:
        evaluation.check_scorable(arch)
        # All the dataset's images, not only a --max_images subset: with it, the scores also say
        # how well the generator does on images it never saw.
        real = data.load(dataclasses.replace(images.request, conditional=False,
                                             max_images=None), batch_size)
        count = min(FLAGS.eval_samples, real.count)
        evaluator = evaluation.prepare(real, features, count=count, seed=FLAGS.seed,
                                       batch_size=batch_size, cache_dir=FLAGS.cache_dir,
                                       what=f"real ({images.request.dataset})")
    except config.ConfigError as e:
        raise config.ConfigError(f"{e.message}; or train without scores: --eval_every 0",
                                 e.setting) from None
    print(f"Scoring every {eval_every} steps: "
          f"{count:,} generated against {count:,} real images, {evaluator.name} features, "
          f"resize {evaluator.resize}.")
    return evaluator


def resumed_where(checkpoints, images):
    """"" when the run goes on as it was made; where in its images it goes on when the flags
    change what a step reads or does and --allow_changes says so; else one line refuses."""
    saved, position = checkpoints.saved, checkpoints.position
    changes = saved.changes(position) if saved else []
    if not changes:
        return ""
    said = lambda p: ", ".join(f"{getattr(p, n):,} images" if n == "count" else
                               f"--{n} {getattr(p, n)}" for n in changes)
    was, now = said(saved), said(position)
    if not FLAGS.allow_changes:
        raise config.ConfigError(
            f"{checkpoints.run_dir.path} was trained with {was}, and this run has {now}: the "
            "run would not go on as it was made. Pass the same, or --allow_changes to go on "
            f"from image {saved.image:,} of what it reads now")
    epoch, image = divmod(checkpoints.next_image(), images.count)
    return f", with {now} (not {was}), from image {image:,} of {images.count:,} in epoch {epoch + 1}"


def said(value):
    """A flag's value as it is written on the command line."""
    return (",".join(value) or "none") if isinstance(value, list) else value


def changed_flags(run_dir, now):
    """'--name value (was old)' for each flag that differs from the run's flags.json: a resumed
    run learns with the flags it is given, so a dropped --recipe drops the recipe's levers."""
    try:
        was = run_dir.read_flags()
    except config.ConfigError:  # a missing or damaged flags.json says nothing; the run writes it
        return []
    return [f"--{name} {said(value)} (was {said(was[name])})" for name, value in now.items()
            if name in was and was[name] != value]


def check():
    """The Run the flags ask for, built and checked without writing anything: the flags, the
    images, the networks, the checkpoint it resumes from (another architecture is refused) and
    the scores' feature network. None when the run is already at its last step."""
    check_flags()
    strategy, precision, jit_compile = devices()
    keras.utils.set_random_seed(FLAGS.seed)
    record = data.dataset(FLAGS.dataset)
    images = data.load(data.Request.from_flags(FLAGS.flag_values_dict()), FLAGS.batch_size)
    labels = images.labels or data.Labels("", ())
    arch = Architecture(image_size=images.image_size, channels=images.channels,
                        z_dim=FLAGS.z_dim, gf_dim=FLAGS.gf_dim, df_dim=FLAGS.df_dim,
                        kernel_size=FLAGS.kernel_size, labels=labels.kind,
                        label_names=labels.names, spectral_norm=FLAGS.spectral_norm)
    with strategy.scope():  # variables (and batch norm's synchronisation) follow the strategy
        generator = Generator(arch, FLAGS.init)
        discriminator = Discriminator(arch, FLAGS.init)
    try:
        policy = augment.check_policy(FLAGS.augment)
    except ValueError as e:
        raise config.ConfigError(str(e), "augment") from None
    solver = Solver(generator, discriminator, lr=FLAGS.lr, beta1=FLAGS.beta1,
                    g_steps=FLAGS.g_steps, label_smoothing=FLAGS.label_smoothing,
                    two_sided_smoothing=FLAGS.two_sided_smoothing, seed=FLAGS.seed,
                    ema_decay=FLAGS.ema_decay, strategy=strategy, jit_compile=jit_compile,
                    d_lr=FLAGS.d_lr, g_lr=FLAGS.g_lr, loss=FLAGS.loss, policy=policy,
                    ada_target=FLAGS.ada_target, ada_kimg=FLAGS.ada_kimg)
    out_dir = FLAGS.out_dir or os.path.join("runs", FLAGS.dataset.replace(":", "_"))
    position = checkpoint.Position(FLAGS.dataset, images.count, FLAGS.batch_size, FLAGS.g_steps)
    checkpoints = checkpoint.Checkpoints(solver, RunDir(out_dir), loop.is_chief(strategy),
                                         position)
    resumed = checkpoints.restore()
    step = int(solver.step.numpy())
    flag_values = {f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])}
    flag_values["image_size"] = images.image_size  # flags.json has the size trained at
    if resumed:
        print(f"Resuming from {resumed} at step {step}{resumed_where(checkpoints, images)}.")
        changed = changed_flags(checkpoints.run_dir, flag_values)
        if changed:
            print(f"Flags that differ from the run's flags.json: {', '.join(changed)}.")
    steps_per_epoch = images.count // FLAGS.batch_size
    max_steps = FLAGS.max_steps or (FLAGS.epochs or record.epochs) * steps_per_epoch
    if step >= max_steps:
        print(f"Nothing to do: {out_dir} is already at step {step} of {max_steps}; "
              "pass a larger --max_steps to train on.")
        return None
    eval_every = record.eval_every if FLAGS.eval_every is None else FLAGS.eval_every
    schedule = loop.Schedule(max_steps, log_every=FLAGS.log_every,
                             sample_every=FLAGS.sample_every,
                             checkpoint_every=FLAGS.checkpoint_every, eval_every=eval_every,
                             stop_on_failure=FLAGS.stop_on_failure)
    evaluator = (scorer(images, arch, eval_every, FLAGS.eval_features or record.eval_features)
                 if eval_every and checkpoints.chief else None)
    conditioned = (f", conditioned on {arch.y_dim} {arch.labels} ({', '.join(arch.label_names)})"
                   if arch.labels else "")
    description = (
        f"{'Conditional ' if arch.labels else ''}DCGAN on {FLAGS.dataset}{conditioned}: "
        f"{images.count} images of {images.image_size}x{images.image_size}x{images.channels}, "
        f"{steps_per_epoch} steps per epoch of batch {FLAGS.batch_size}; generator "
        f"{count_params(generator):,} and discriminator {count_params(discriminator):,} "
        f"parameters; {strategy.num_replicas_in_sync} replica(s), {precision}, XLA "
        f"{'on' if jit_compile else 'off'}; training to step {max_steps}.")
    return Run(solver, checkpoints, images, schedule, evaluator, description,
               {**flag_values, "architecture": json.loads(arch.to_json())})


def apply_recipe():
    """Give the recipe's flags that the command line did not its values; the line saying what
    the run is trained with."""
    recipe = config.RECIPES[FLAGS.recipe]
    for name, value in recipe.items():
        if not FLAGS[name].present:
            FLAGS[name].value = value
    return f"Recipe {FLAGS.recipe}" + "".join(
        f" --{name} {said(FLAGS[name].value)}" for name in recipe) + "."


def run():
    print(apply_recipe())
    prepared = check()
    if prepared is None:
        return
    print(prepared.description)
    try:
        loop.train(prepared.solver, prepared.checkpoints, prepared.images, prepared.schedule,
                   evaluator=prepared.evaluator, flags=prepared.flags)
    except tf.errors.DataLossError:  # only TFRecords have checksums to fail
        raise data.damaged_shard_error(prepared.images.request.data_dir) from None


def define_flags():
    flags.DEFINE_string("dataset", "celeba", f"one of {', '.join(data.DATASETS)}")
    flags.DEFINE_string("data_dir", None, "where the dataset lives (default: the dataset's own)")
    flags.DEFINE_string("out_dir", None, "run directory for logs, samples and checkpoints "
                        "(default: runs/DATASET); an existing run there is resumed")
    flags.DEFINE_integer("max_steps", None, "train until this step (default: --epochs worth)")
    flags.DEFINE_integer("epochs", None, "epochs to train when --max_steps is not given "
                         "(default: the dataset's, " + ", ".join(
                             f"{name} {r.epochs}" for name, r in data.DATASETS.items()) + ")")
    flags.DEFINE_integer("batch_size", config.BATCH_SIZE, "images per step (original 100, paper 128)")
    flags.DEFINE_integer("image_size", None, "image height and width (default: the dataset's)")
    flags.DEFINE_integer("crop", None, "folder and tfds: centred crop box side before resizing "
                         "(default: the largest centred square; 108 for CelebA faces, as prepro.py)")
    flags.DEFINE_enum("recipe", "original", list(config.RECIPES),
                      "original: the original's settings; small_data: augmentation with ADA, "
                      "for a few hundred or thousand images (see README, 'Your own images'). "
                      "Flags given explicitly override the recipe's")
    flags.DEFINE_float("lr", config.LR, "Adam learning rate, both networks")
    flags.DEFINE_float("d_lr", None, "the discriminator's own learning rate (TTUR; "
                       "default: --lr)")
    flags.DEFINE_float("g_lr", None, "the generator's own learning rate (TTUR; default: --lr)")
    flags.DEFINE_enum("loss", "cross_entropy", list(LOSSES),
                      "cross_entropy (the original's, G's non-saturating) or hinge (Miyato et "
                      "al. 2018)")
    flags.DEFINE_bool("spectral_norm", False, "spectrally normalise D's weights (Miyato et al. "
                      "2018), and so build D without batch norm, as they did")
    flags.DEFINE_list("augment", [], "differentiable augmentations of every image D sees "
                      f"(DiffAugment), some of {','.join(augment.POLICIES)}; default: none")
    flags.DEFINE_float("ada_target", None, "adapt how often each image is augmented (ADA): "
                       f"more when r_t = E[sign(D(real))] is above this ({augment.ADA_TARGET} "
                       "in ADA), less when below; default: always")
    flags.DEFINE_float("ada_kimg", None, "ADA's speed: p can go from 0 to 1 in this many "
                       f"thousand real images (default: {augment.ADA_KIMG}, ADA's)")
    flags.DEFINE_float("beta1", config.BETA1, "Adam beta1, both networks")
    flags.DEFINE_integer("z_dim", config.Z_DIM, "size of z ~ U(-1, 1)")
    flags.DEFINE_integer("g_steps", config.G_STEPS, "generator updates per discriminator update "
                         "(original 2, paper 1)")
    flags.DEFINE_float("label_smoothing", config.LABEL_SMOOTHING,
                       "s in [0, 0.5): real targets become 1 - s")
    flags.DEFINE_bool("two_sided_smoothing", False,
                      "with --label_smoothing, also lift fake targets from 0 to s")
    flags.DEFINE_bool("conditional", False, "a conditional DCGAN, G(z, y) and D(x, y), on the "
                      "dataset's labels: mnist's digits, a folder's subfolders, a tfds ClassLabel, "
                      "CelebA's attributes")
    flags.DEFINE_string("split", None, "mnist: train (4,000 digits) or test (the other 1,000); "
                        "tfds: a split's name (default: all of mnist, tfds' train). classify.py "
                        "and sample.py --mode neighbours score a run of the train split on test")
    flags.DEFINE_integer("max_images", None, "train on this many of the dataset's images "
                         "only, the same ones whatever --seed (held in memory); scores still "
                         "compare with all of them")
    flags.DEFINE_string("label_key", None, "tfds: the ClassLabel feature (default: label)")
    flags.DEFINE_list("attributes", None, "celeba: the attributes to condition on, such as "
                      "Smiling,Male,Eyeglasses (default: all 40)")
    flags.DEFINE_float("ema_decay", 0.0, "keep a moving average of the generator's weights with "
                       "this decay per step (0.999 averages about the last 1,000 steps), which "
                       "the samples, sample.py, export.py and evaluate.py then use; 0: none")
    flags.DEFINE_integer("kernel_size", config.KERNEL_SIZE, "convolution kernel size")
    flags.DEFINE_integer("gf_dim", config.GF_DIM, "generator filters in its last hidden layer")
    flags.DEFINE_integer("df_dim", config.DF_DIM, "discriminator filters in its first layer")
    flags.DEFINE_enum("init", config.INIT, ["glorot", "normal"],
                      "weight init: glorot (original) or normal, N(0, 0.02) (paper)")
    flags.DEFINE_integer("seed", 0, "seed for weights, z and data order")
    flags.DEFINE_bool("allow_changes", False, "resume a run with another --batch_size, "
                      "--g_steps or --dataset than it was made with: it goes on from the image "
                      "it had reached, as a run of the new settings (without this, refused)")
    flags.DEFINE_integer("log_every", config.LOG_EVERY, "steps between loss logs")
    flags.DEFINE_integer("sample_every", config.SAMPLE_EVERY, "steps between sample grids")
    flags.DEFINE_integer("checkpoint_every", config.CHECKPOINT_EVERY, "steps between checkpoints")
    flags.DEFINE_integer("eval_every", None, "steps between scores of the sampler (FID, KID, "
                         "precision, recall; and the best checkpoint kept), 0: none (default: "
                         "the dataset's, " + ", ".join(f"{name} {r.eval_every}" for name, r
                                                       in data.DATASETS.items()) + ")")
    flags.DEFINE_string("eval_features", None, "the scores' feature network, as evaluate.py's "
                        "--features (default: mnist for --dataset mnist, else inception)")
    flags.DEFINE_integer("eval_samples", evaluation.EVAL_SAMPLES, "generated and real images "
                         "per score (at most the dataset's size)")
    flags.DEFINE_bool("stop_on_failure", False, "when the run fails (the discriminator has won, "
                      "or the generator's modes collapse; see training/failure.py), save and "
                      "stop with a non-zero exit status; without it, a warning")
    flags.DEFINE_string("cache_dir", evaluation.CACHE_DIR, "where the real images' statistics "
                        "are kept for the next score, of this run or another")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "tf.distribute: one device; all local GPUs; or several machines (TF_CONFIG)")
    flags.DEFINE_enum("mixed_precision", "auto",
                      ["auto", "float32", "mixed_float16", "mixed_bfloat16"],
                      "compute precision; auto: mixed_float16 on a GPU, float32 on a CPU")
    flags.DEFINE_bool("jit_compile", None, "compile each replica's step with XLA (default: on a "
                      "GPU only; it slows the step on a CPU, see PERF.md)")


if __name__ == "__main__":
    cli.main(run, define_flags, FLAG_NAMES)
