"""Score a trained generator with FID and KID: how far the features of its images lie from those
of the real images it learnt from. Lower is better; 0 means the same distribution of features.
And with precision and recall: the share of its images that look like real ones (fidelity), and
the share of real images that look like some of its own (coverage; 1 is best for both).

    python evaluate.py --out_dir runs/celeba       # Inception features of 50,000 images
    python evaluate.py --out_dir runs/mnist --features mnist

The four scores (metrics/distances.py, metrics/precision_recall.py) depend on the feature network
(metrics/features.py), on how images are resized for it and on the number of images, so those
three are printed and recorded.

The result goes to RUN/eval/step_STEP_FEATURES.json and to TensorBoard (eval/fid_FEATURES,
eval/kid_FEATURES, eval/precision_FEATURES, eval/recall_FEATURES at the checkpoint's step, in
RUN/logs).
"""
import os
import time

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import tensorflow as tf
from absl import flags

import config
import data
from metrics import distances, features, precision_recall
from utils import cli, files
from utils.run_dir import RunDir, load_generator

NUM_SAMPLES = 50_000  # the field's standard for FID, CelebA 64x64 included

FLAGS = flags.FLAGS


def real_source(run_dir, dataset, data_dir):
    """(dataset, data_dir, crop) of the real images: --dataset, else the run's flags.json."""
    if dataset:
        return dataset, data_dir, None
    run_flags = run_dir.read_flags()
    try:
        return run_flags["dataset"], data_dir or run_flags.get("data_dir"), run_flags.get("crop")
    except (KeyError, TypeError, AttributeError) as e:
        raise config.ConfigError(f"{run_dir.flags_json} is damaged ({e!r}): pass --dataset") from None


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


def write_scalars(run_dir, step, name, scalars):
    """Each of scalars as eval/METRIC_FEATURES; returns their tags."""
    tags = [f"eval/{metric}_{name}" for metric in scalars]
    writer = tf.summary.create_file_writer(run_dir.logs)
    with writer.as_default():
        for tag, value in zip(tags, scalars.values()):
            tf.summary.scalar(tag, value, step=step)
    writer.close()
    return tags


def run():
    start = time.perf_counter()
    check_flags()
    run_dir = RunDir(FLAGS.out_dir)
    generator, step, checkpoint, _ = load_generator(run_dir, FLAGS.checkpoint)
    files.make_folder(run_dir.eval, "check the run directory's permissions")  # before the work
    dataset, data_dir, crop = real_source(run_dir, FLAGS.dataset, FLAGS.data_dir)
    images = data.load(dataset, FLAGS.batch_size, image_size=generator.arch.image_size,
                       data_dir=data_dir, crop=crop, seed=FLAGS.seed)
    if images.channels != generator.arch.channels:
        raise config.ConfigError(f"{dataset} has {images.channels}-channel images and the run's "
                                 f"generator makes {generator.arch.channels}-channel ones: pass "
                                 "the --dataset it trained on")
    count = sample_count(FLAGS.num_samples, images.count)
    network, name = features.feature_network(FLAGS.features)
    resize = features.describe_input(network, images.image_size, images.channels)

    real = features.feature_statistics(
        features.real_pixels(images.stream(), count, FLAGS.batch_size), network, count,
        f"real ({dataset})")
    generated = features.feature_statistics(
        features.generated_pixels(generator, count, FLAGS.batch_size, FLAGS.seed), network, count,
        f"generated (step {step})")
    fid = distances.frechet_distance(*real.mu_sigma(), *generated.mu_sigma())
    real_kept, generated_kept = real.kept_features(), generated.kept_features()
    kid_mean, kid_std = distances.kid(real_kept[:distances.KID_KEPT],
                                      generated_kept[:distances.KID_KEPT], seed=FLAGS.seed)
    precision, recall = precision_recall.precision_recall(real_kept, generated_kept)

    result = dict(fid=fid, kid_mean=kid_mean, kid_std=kid_std, precision=precision, recall=recall,
                  num_real=real.count, num_generated=generated.count, features=FLAGS.features,
                  resize=resize, checkpoint=checkpoint, step=step, dataset=dataset,
                  seed=FLAGS.seed, kid_subsets=distances.KID_SUBSETS,
                  kid_subset_size=min(distances.KID_SUBSET_SIZE, count), pr_k=precision_recall.K,
                  pr_num_real=len(real_kept), pr_num_generated=len(generated_kept))
    path = os.path.join(run_dir.eval, f"step_{step:07d}_{name}.json")
    files.write_json(path, result)
    tags = write_scalars(run_dir, step, name, dict(fid=fid, kid=kid_mean, precision=precision,
                                                   recall=recall))
    print(f"FID {fid:.4f}  KID {kid_mean:.5f} ± {kid_std:.5f}  precision {precision:.4f}  recall "
          f"{recall:.4f}  at step {step}: {name} features, resize {resize}, {real.count:,} real "
          f"and {generated.count:,} generated images")
    print(f"Wrote {path}, and {', '.join(tags)} to {run_dir.logs} "
          f"({cli.format_duration(time.perf_counter() - start)} in all).")


def define_flags():
    flags.DEFINE_string("out_dir", None, "run directory to evaluate (as train.py's --out_dir)")
    flags.DEFINE_string("checkpoint", None, "checkpoint to evaluate (default: the run's latest)")
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


if __name__ == "__main__":
    cli.main(run, define_flags)
