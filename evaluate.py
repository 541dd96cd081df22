"""Score a trained generator with FID and KID: how far the features of its images lie from those
of the real images it learnt from. Lower is better; 0 means the same distribution of features.
And with precision and recall: the share of its images that look like real ones (fidelity), and
the share of real images that look like some of its own (coverage; 1 is best for both).

    python evaluate.py --out_dir runs/celeba       # Inception features of 50,000 images
    python evaluate.py --out_dir runs/mnist --features mnist
    python evaluate.py --out_dir runs/mnist --features mnist --all   # every checkpoint kept

The four scores (metrics/distances.py, metrics/precision_recall.py) depend on the feature network
(metrics/features.py), on how images are resized for it and on the number of images, so those
three are printed and recorded.

The result goes to RUN/eval/step_STEP_FEATURES.json and to TensorBoard (eval/fid_FEATURES,
eval/kid_FEATURES, eval/precision_FEATURES, eval/recall_FEATURES at the checkpoint's step, in
RUN/logs). --all scores every checkpoint the run keeps and draws their FIDs against the step in
RUN/eval/fid_FEATURES.png. The real images' statistics are computed once and kept in --cache_dir
(metrics/evaluation.py), for the next evaluation of this run or another, and for train.py's.
"""
import dataclasses
import os
import time

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import tensorflow as tf
from absl import flags

import config
import data
from metrics import evaluation, precision_recall
from training import checkpoint
from training.run_dir import RunDir
from utils import cli, files

NUM_SAMPLES = 50_000  # the field's standard for FID, CelebA 64x64 included

FLAGS = flags.FLAGS


def real_images(run_dir, dataset, data_dir):
    """The Request of the real images: dataset (and data_dir) when given, else the run's own,
    as its flags.json records them (data_dir, when given, in place of the run's folder)."""
    if dataset:
        return data.Request(dataset, data_dir=data_dir)
    try:
        request = data.Request.from_flags(run_dir.read_flags())
    except (KeyError, TypeError, AttributeError) as e:
        raise config.ConfigError(f"{run_dir.flags_json} is damaged ({e!r}): name the dataset",
                                 "dataset") from None
    return dataclasses.replace(request, data_dir=data_dir or request.data_dir)


def check_flags():
    if not FLAGS.out_dir:
        raise config.ConfigError("pass --out_dir: the run directory to evaluate")
    if FLAGS.num_samples <= precision_recall.K:
        raise config.ConfigError(f"--num_samples must be at least {precision_recall.K + 1} (each "
                                 f"image's {precision_recall.K} nearest neighbours), not "
                                 f"{FLAGS.num_samples}")
    if FLAGS.batch_size < 1:
        raise config.ConfigError(f"--batch_size must be a positive number, not {FLAGS.batch_size}")


def sample_count(requested, available):
    if requested <= available:
        return requested
    print(f"Using {available:,} real and {available:,} generated images, not {requested:,}: the "
          f"dataset has {available:,}.")
    return available


def write_scalars(run_dir, result):
    """The result's scores to TensorBoard, at its step; returns their tags."""
    values = evaluation.scalars(result)
    with files.writing(f"the scores to TensorBoard in {run_dir.logs}"):
        writer = tf.summary.create_file_writer(run_dir.logs)
        with writer.as_default():
            for tag, value in values.items():
                tf.summary.scalar(tag, value, step=result["step"])
        writer.close()
    return list(values)


def checkpoints_to_score(run_dir):
    """--checkpoint, or with --all every checkpoint the run keeps (its best one too), oldest
    first; None: the run's newest that reads."""
    if not FLAGS.all:
        return [FLAGS.checkpoint]
    kept = checkpoint.kept(run_dir)
    if not kept:
        raise config.ConfigError(f"no checkpoint in {run_dir.checkpoints}: train first (python "
                                 f"train.py --out_dir {run_dir.path})")
    return kept


def run():
    start = time.perf_counter()
    check_flags()
    run_dir = RunDir(FLAGS.out_dir)
    paths = checkpoints_to_score(run_dir)
    # Refused before any work if it does not read.
    snapshot = checkpoint.load_generator(run_dir, paths[0], FLAGS.ema)
    files.make_folder(run_dir.eval, "check the run directory's permissions")
    arch = snapshot.generator.arch
    request = dataclasses.replace(real_images(run_dir, FLAGS.dataset, FLAGS.data_dir),
                                  image_size=arch.image_size, seed=FLAGS.seed, conditional=False)
    images = data.load(request, FLAGS.batch_size)
    if images.channels != arch.channels:
        raise config.ConfigError(f"{request.dataset} has {images.channels}-channel images and "
                                 f"the run's generator makes {arch.channels}-channel ones: pass "
                                 "the --dataset it trained on")
    evaluator = evaluation.prepare(
        images, FLAGS.features, count=sample_count(FLAGS.num_samples, images.count),
        seed=FLAGS.seed, batch_size=FLAGS.batch_size, cache_dir=FLAGS.cache_dir,
        what=f"real ({request.dataset})")
    real_classes = None
    if arch.labels == "classes":  # the real images again, with their labels, for FID by class
        labelled = data.load(dataclasses.replace(request, conditional=True), FLAGS.batch_size)
        real_classes = evaluation.real_by_class(labelled, evaluator)
    results, written = [], []
    for path in paths:
        if path != paths[0]:
            snapshot = checkpoint.load_generator(run_dir, path, FLAGS.ema)
        result = {**evaluation.score(evaluator, snapshot.generator,
                                     f"generated (step {snapshot.step})", real_classes),
                  "step": snapshot.step, "checkpoint": snapshot.path,
                  "dataset": request.dataset, "generator": "ema" if snapshot.ema else "trained",
                  "noema": not snapshot.ema and checkpoint.has_ema(snapshot.path)}
        written.append(evaluation.record(run_dir, result))
        tags = write_scalars(run_dir, result)
        print(f"{evaluation.summary(result)}; {snapshot.describe()}", flush=True)
        if "fid_per_class" in result:
            print("FID by class: " + ", ".join(f"{name} {fid:.2f}" for name, fid
                                               in result["fid_per_class"].items()))
        results.append(result)
    if FLAGS.all:
        written.append(os.path.join(run_dir.eval, f"fid_{evaluation.result_name(result)}.png"))
        evaluation.plot_fid(results, written[-1], title=run_dir.path)
    print(f"Wrote {', '.join(written)}, and {', '.join(tags)} to {run_dir.logs} "
          f"({cli.format_duration(time.perf_counter() - start)} in all).")


def define_flags():
    flags.DEFINE_string("out_dir", None, "run directory to evaluate (as train.py's --out_dir)")
    flags.DEFINE_string("checkpoint", None, "checkpoint to evaluate (default: the run's latest; "
                        "best: the one of the lowest FID that train.py --eval_every kept)")
    flags.DEFINE_bool("all", False, "score every checkpoint the run keeps, and draw FID against "
                      "step in RUN/eval/fid_FEATURES.png")
    flags.DEFINE_bool("ema", True, checkpoint.EMA_HELP)
    flags.DEFINE_string("features", "inception", "feature network: inception (ImageNet InceptionV3, "
                        "downloaded once), mnist (the digit classifier of metrics/classifier.py, "
                        "its weights shipped beside it), or a PATH.keras whose output is one "
                        "feature vector per image")
    flags.DEFINE_integer("num_samples", NUM_SAMPLES, "real and generated images, each (at most the "
                         "dataset's size)")
    flags.DEFINE_integer("batch_size", 100, "images per batch through the networks")
    flags.DEFINE_string("dataset", None, "the real images (default: the run's, from its flags.json)")
    flags.DEFINE_string("data_dir", None, "where the real images live (default: the run's, else "
                        "the dataset's own)")
    flags.DEFINE_integer("seed", 0, "seed for z, the real images' order and KID's subsets")
    flags.DEFINE_string("cache_dir", evaluation.CACHE_DIR, "where the real images' statistics "
                        "are kept for the next evaluation, of this run or another")


if __name__ == "__main__":
    cli.main(run, define_flags)
