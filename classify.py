"""What the discriminator learnt, as the DCGAN paper measured it (section 5.1): a linear
classifier on its features, trained on a few labelled images, against the same classifier on
raw pixels and on an untrained discriminator's features, and a CNN of D's architecture trained
on the same labels.

    python train.py --dataset mnist --split train --out_dir runs/mnist_train   # never sees "test"
    python classify.py --out_dir runs/mnist_train      # 10 and 100 labels a class, 3 draws each
    python classify.py --out_dir runs/mnist_train --checkpoint runs/mnist_train/checkpoints/ckpt-500 \
        --nobaselines                                  # an earlier D, without the baselines

The labelled images are drawn, a class at a time, from the run's training images (its --split);
the scores are on the dataset's test split, which a run trained on its train split never saw
(the command says when the run saw them). The features and the classifier: metrics/probe.py.
A table goes to stdout, the whole result to RUN/eval/probe_step_STEP.json and its means to
TensorBoard (probe/METHOD_PER_CLASS).
"""
import dataclasses
import os
import statistics
import time

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import numpy as np
import tensorflow as tf
from absl import flags

import config
import data
from metrics import probe
from training import checkpoint
from training.run_dir import RunDir
from utils import cli, files

FLAGS = flags.FLAGS
METHODS = ("dcgan", "random", "pixels", "supervised")
SAYS = {"dcgan": "DCGAN features (this run's D)", "random": "untrained D's features",
        "pixels": "raw pixels", "supervised": "CNN of D's architecture, supervised"}


def labelled(request, split):
    """(images, labels) of one split of the run's images, every image once: the training
    split as the run read it (only its --max_images, if it had that), the test split whole."""
    return data.take(data.load(dataclasses.replace(
        request, conditional=True, split=split,
        max_images=request.max_images if split == "train" else None), probe.BATCH_SIZE))


def labels_per_class():
    try:
        counts = [int(n) for n in FLAGS.labels_per_class]
    except ValueError:
        counts = []
    if not counts or min(counts) < 2:
        raise config.ConfigError("--labels_per_class takes numbers of 2 or more, such as 10,100")
    return counts


def read_run():
    """The run's (discriminator, step, checkpoint path, Request of its images, weight
    initialisation), checked."""
    if not FLAGS.out_dir:
        raise config.ConfigError("pass --out_dir: the run directory whose discriminator to probe")
    if FLAGS.draws < 1:
        raise config.ConfigError(f"--draws must be a positive number, not {FLAGS.draws}")
    run_dir = RunDir(FLAGS.out_dir)
    discriminator, step, path = checkpoint.load_discriminator(run_dir, FLAGS.checkpoint)
    if discriminator.arch.labels:
        raise config.ConfigError("this run's discriminator is conditional (it takes the labels "
                                 "it would be scored on): probe an unconditional run")
    run_flags = run_dir.read_flags()
    try:
        request = data.Request.from_flags(run_flags)
    except (KeyError, TypeError, AttributeError) as e:
        raise config.ConfigError(f"{run_dir.flags_json} is damaged ({e!r})") from None
    if data.dataset(request.dataset).labels != "classes":
        raise config.ConfigError(f"the run trained on {request.dataset}, whose images have no "
                                 "class labels to probe with: probe a run of mnist or tfds:NAME")
    if not data.dataset(request.dataset).splits:
        raise config.ConfigError(f"the run trained on {request.dataset}, which has no test split "
                                 "to score on: probe a run of mnist or tfds:NAME")
    return (discriminator, step, path,
            dataclasses.replace(request, image_size=discriminator.arch.image_size),
            run_flags.get("init", config.INIT))


def probe_all(discriminator, train, train_labels, test, test_labels, counts, init):
    """{method: {labels a class: [accuracy of each draw]}}."""
    extractors = {"dcgan": probe.feature_extractor(discriminator)}
    if FLAGS.baselines:
        extractors["random"] = probe.feature_extractor(
            probe.untrained(discriminator.arch, init, FLAGS.seed))
    test_features = {name: extract(test) for name, extract in extractors.items()}
    results = {}
    for per_class in counts:
        for draw in range(FLAGS.draws):
            seed = FLAGS.seed + draw
            chosen = probe.draw_labelled(train_labels, per_class, seed)
            x, y = train[chosen], train_labels[chosen]
            scores = {name: probe.linear_probe(extract(x), y, test_features[name], test_labels,
                                               seed) for name, extract in extractors.items()}
            if FLAGS.baselines:
                scores["pixels"] = probe.linear_probe(probe.pixels(x), y, probe.pixels(test),
                                                      test_labels, seed)
                scores["supervised"] = probe.supervised_cnn(discriminator.arch, x, y, test,
                                                            test_labels, seed, init)
            for name, accuracy in scores.items():
                results.setdefault(name, {}).setdefault(str(per_class), []).append(accuracy)
            print(f"{per_class} labels a class, draw {draw + 1}/{FLAGS.draws}: " + ", ".join(
                f"{name} {accuracy:.3f}" for name, accuracy in scores.items()), flush=True)
    return results


def run():
    start = time.perf_counter()
    counts = labels_per_class()
    discriminator, step, path, request, init = read_run()
    train, train_labels = labelled(request, "train")
    test, test_labels = labelled(request, "test")
    fewest = int(np.bincount(train_labels).min())
    if max(counts) > fewest:
        raise config.ConfigError(f"--labels_per_class {max(counts)} is more than the {fewest} "
                                 f"training images of the rarest class of {request.dataset}")
    run_dir = RunDir(FLAGS.out_dir)
    files.make_folder(run_dir.eval, "check the run directory's permissions")
    if request.split != "train":
        print(f"Note: this run trained on {request.split or 'all'} of {request.dataset}, the "
              f"{len(test):,} test images among them; train with --split train to score on "
              "images the GAN never saw.")
    results = probe_all(discriminator, train, train_labels, test, test_labels, counts, init)
    report = {"step": step, "checkpoint": path, "dataset": request.dataset,
              "train_split": request.split, "test_images": len(test),
              "feature_size": probe.feature_size(discriminator.arch), "seed": FLAGS.seed,
              "accuracy": results}
    written = os.path.join(run_dir.eval, f"probe_step_{step:07d}.json")
    files.write_json(written, report)
    with files.writing(f"the probe's scores to TensorBoard in {run_dir.logs}"):
        writer = tf.summary.create_file_writer(run_dir.logs)
        with writer.as_default():
            for name, by_count in results.items():
                for per_class, accuracies in by_count.items():
                    tf.summary.scalar(f"probe/{name}_{per_class}", statistics.mean(accuracies),
                                      step=step)
        writer.close()
    print(table(report))
    print(f"Wrote {written} and probe/* to {run_dir.logs} "
          f"({cli.format_duration(time.perf_counter() - start)} in all).")


def table(report):
    """The accuracies as a table: a row per method, mean ± std over the draws per column."""
    counts = sorted(report["accuracy"]["dcgan"], key=int)
    lines = [f"Test accuracy on {report['test_images']:,} images of {report['dataset']} "
             f"(step {report['step']}; {report['feature_size']:,} features):",
             f"{'':40s}" + "".join(f"{c + ' a class':>18s}" for c in counts)]
    for name in (m for m in METHODS if m in report["accuracy"]):
        cells = []
        for c in counts:
            values = report["accuracy"][name][c]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        lines.append(f"{SAYS[name]:40s}" + "".join(f"{cell:>18s}" for cell in cells))
    return "\n".join(lines)


def define_flags():
    flags.DEFINE_string("out_dir", None, "the run directory (train.py's --out_dir)")
    flags.DEFINE_string("checkpoint", None, "a checkpoint to probe instead of the run's latest")
    flags.DEFINE_list("labels_per_class", ["10", "100"], "labelled training images of each class")
    flags.DEFINE_integer("draws", 3, "draws of the labelled images for each number, each with its "
                         "own seed (--seed, --seed + 1, ...)")
    flags.DEFINE_integer("seed", 0, "seed of the first draw")
    flags.DEFINE_bool("baselines", True, "the baselines beside the run's D: an untrained D's "
                      "features, raw pixels and a supervised CNN (--nobaselines: D alone, to "
                      "follow a run's checkpoints)")


if __name__ == "__main__":
    cli.main(run, define_flags)
