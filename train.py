"""Train a DCGAN.

    python train.py --dataset mnist     # 5,000 bundled digits, no download
    python train.py --dataset celeba    # after ./download.sh and python prepro.py

Logs, sample grids and checkpoints go to --out_dir (default runs/DATASET); running the same
command again resumes from its latest checkpoint.
"""
import json
import os
import sys

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import keras
import tensorflow as tf
from absl import flags

import config
import data
from metrics import evaluation, precision_recall
from model import Architecture, Discriminator, Generator, count_params
from solver import Solver
from utils import cli

FLAGS = flags.FLAGS


def check_flags():
    positive = ["batch_size", "z_dim", "g_steps", "kernel_size", "gf_dim", "df_dim",
                "log_every", "sample_every", "checkpoint_every", "max_steps", "epochs", "image_size",
                "crop"]
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
    if not FLAGS.lr > 0:
        raise config.ConfigError(f"--lr must be a positive number, not {FLAGS.lr}")
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


def scorer(images, arch, eval_every):
    """score(generator, step): the scores of --eval_samples generated images against as many
    of the run's real images, whose statistics are computed (or read from the cache) now."""
    features = FLAGS.eval_features or ("mnist" if FLAGS.dataset == "mnist" else "inception")
    batch_size = min(evaluation.BATCH_SIZE, images.count)
    try:
        evaluation.asked_labels(arch, 0)  # refuses what it cannot score, before training
        real = data.load(FLAGS.dataset, batch_size, image_size=images.image_size,
                         data_dir=FLAGS.data_dir, crop=FLAGS.crop, seed=FLAGS.seed)
        count = min(FLAGS.eval_samples, real.count)
        evaluator = evaluation.prepare(real, features, count=count, seed=FLAGS.seed,
                                       batch_size=batch_size, cache_dir=FLAGS.cache_dir,
                                       what=f"real ({FLAGS.dataset})")
    except config.ConfigError as e:  # its words name evaluate.py's flag, --features
        raise config.ConfigError(str(e).replace("--features", "--eval_features")
                                 + "; or train without scores: --eval_every 0") from None
    print(f"Scoring every {eval_every} steps: "
          f"{count:,} generated against {count:,} real images, {evaluator.name} features, "
          f"resize {evaluator.resize}.")
    return lambda generator, step: evaluation.score(evaluator, generator,
                                                    f"generated (step {step})")


def run():
    check_flags()
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    precision = FLAGS.mixed_precision
    if precision == "auto":
        precision = "mixed_float16" if on_gpu else "float32"
    keras.mixed_precision.set_global_policy(precision)
    strategy = make_strategy(FLAGS.strategy)
    if FLAGS.batch_size % strategy.num_replicas_in_sync:
        raise config.ConfigError(f"--batch_size {FLAGS.batch_size} must split evenly across "
                                 f"{strategy.num_replicas_in_sync} replicas")
    keras.utils.set_random_seed(FLAGS.seed)
    out_dir = FLAGS.out_dir or os.path.join("runs", FLAGS.dataset.replace(":", "_"))
    images = data.load(FLAGS.dataset, FLAGS.batch_size, image_size=FLAGS.image_size,
                       data_dir=FLAGS.data_dir, crop=FLAGS.crop, seed=FLAGS.seed,
                       conditional=FLAGS.conditional, label_key=FLAGS.label_key,
                       attributes=FLAGS.attributes)
    labels = images.labels or data.Labels("", ())
    arch = Architecture(image_size=images.image_size, channels=images.channels,
                        z_dim=FLAGS.z_dim, gf_dim=FLAGS.gf_dim, df_dim=FLAGS.df_dim,
                        kernel_size=FLAGS.kernel_size, labels=labels.kind,
                        label_names=labels.names)
    with strategy.scope():  # variables (and batch norm's synchronisation) follow the strategy
        generator = Generator(arch, FLAGS.init)
        discriminator = Discriminator(arch, FLAGS.init)
    jit_compile = on_gpu if FLAGS.jit_compile is None else FLAGS.jit_compile
    solver = Solver(generator, discriminator, out_dir=out_dir, lr=FLAGS.lr, beta1=FLAGS.beta1,
                    g_steps=FLAGS.g_steps, label_smoothing=FLAGS.label_smoothing,
                    two_sided_smoothing=FLAGS.two_sided_smoothing, seed=FLAGS.seed,
                    ema_decay=FLAGS.ema_decay, strategy=strategy, jit_compile=jit_compile)
    steps_per_epoch = images.count // FLAGS.batch_size
    epochs = FLAGS.epochs or config.EPOCHS.get(FLAGS.dataset, config.DEFAULT_EPOCHS)
    max_steps = FLAGS.max_steps or epochs * steps_per_epoch

    resumed = solver.restore()  # before any write: a mismatch leaves the directory as it was
    step = int(solver.step.numpy())
    if resumed:
        print(f"Resuming from {resumed} at step {step}.")
    if step >= max_steps:
        print(f"Nothing to do: {out_dir} is already at step {step} of {max_steps}; "
              "pass a larger --max_steps to train on.")
        return
    eval_every = (config.EVAL_EVERY.get(FLAGS.dataset, 0) if FLAGS.eval_every is None
                  else FLAGS.eval_every)
    score = None
    if eval_every and solver.chief:  # before anything is written: the network may be missing
        score = scorer(images, arch, eval_every)
    solver.run_dir.create(lock=solver.chief)  # refused if another train.py is writing there
    if solver.chief:  # how the run was made, for evaluate.py (which real images) and for people
        flag_values = {f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])}
        with solver.writing("flags.json"):
            solver.run_dir.write_flags({**flag_values, "image_size": images.image_size,
                                        "architecture": json.loads(arch.to_json())})
    conditioned = (f", conditioned on {arch.y_dim} {arch.labels} ({', '.join(arch.label_names)})"
                   if arch.labels else "")
    print(f"{'Conditional ' if arch.labels else ''}DCGAN on {FLAGS.dataset}{conditioned}: "
          f"{images.count} images of {images.image_size}x"
          f"{images.image_size}x{images.channels}, {steps_per_epoch} steps per epoch of batch "
          f"{FLAGS.batch_size}; generator {count_params(generator):,} and discriminator "
          f"{count_params(discriminator):,} parameters; {strategy.num_replicas_in_sync} "
          f"replica(s), {precision}, XLA {'on' if jit_compile else 'off'}; "
          f"training to step {max_steps}.")
    # The images from where the run stands: the stopped run's next batch is the resumed run's.
    batches = strategy.experimental_distribute_dataset(images.stream(step * FLAGS.batch_size))
    try:
        path = solver.train(batches, max_steps, batch_size=FLAGS.batch_size,
                            log_every=FLAGS.log_every, sample_every=FLAGS.sample_every,
                            checkpoint_every=FLAGS.checkpoint_every, score=score,
                            eval_every=eval_every)
    except tf.errors.DataLossError:  # only TFRecords have checksums to fail
        data_dir = FLAGS.data_dir or config.DATASETS["celeba"]["data_dir"]
        raise data.damaged_shard_error(data_dir) from None
    if solver.chief:
        print(f"Done at step {max_steps}: checkpoint {path}, samples in {solver.run_dir.samples}, "
              f"curves with: tensorboard --logdir {solver.run_dir.logs}")


def define_flags():
    flags.DEFINE_string("dataset", "celeba", f"one of {', '.join(config.DATASETS)}, or tfds:NAME")
    flags.DEFINE_string("data_dir", None, "where the dataset lives (default: the dataset's own)")
    flags.DEFINE_string("out_dir", None, "run directory for logs, samples and checkpoints "
                        "(default: runs/DATASET); an existing run there is resumed")
    flags.DEFINE_integer("max_steps", None, "train until this step (default: --epochs worth)")
    flags.DEFINE_integer("epochs", None, "epochs to train when --max_steps is not given "
                         f"(default: {config.EPOCHS}, else {config.DEFAULT_EPOCHS})")
    flags.DEFINE_integer("batch_size", config.BATCH_SIZE, "images per step (original 100, paper 128)")
    flags.DEFINE_integer("image_size", None, "image height and width (default: the dataset's)")
    flags.DEFINE_integer("crop", None, "folder and tfds: centred crop box side before resizing "
                         "(default: the largest centred square; 108 for CelebA faces, as prepro.py)")
    flags.DEFINE_float("lr", config.LR, "Adam learning rate, both networks")
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
    flags.DEFINE_integer("log_every", config.LOG_EVERY, "steps between loss logs")
    flags.DEFINE_integer("sample_every", config.SAMPLE_EVERY, "steps between sample grids")
    flags.DEFINE_integer("checkpoint_every", config.CHECKPOINT_EVERY, "steps between checkpoints")
    flags.DEFINE_integer("eval_every", None, "steps between scores of the sampler (FID, KID, "
                         "precision, recall; and the best checkpoint kept), 0: none (default: "
                         f"{config.EVAL_EVERY} for those datasets, else 0)")
    flags.DEFINE_string("eval_features", None, "the scores' feature network, as evaluate.py's "
                        "--features (default: mnist for --dataset mnist, else inception)")
    flags.DEFINE_integer("eval_samples", evaluation.EVAL_SAMPLES, "generated and real images "
                         "per score (at most the dataset's size)")
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
    cli.main(run, define_flags)
