"""A generator scored against the real images it learnt from, as evaluate.py and train.py
--eval_every score it: FID, KID, precision and recall of N generated images against N real ones,
through one feature network.

The real side is the same at every evaluation of a run, and costs as much as the generated side,
so it is computed once and kept in a cache folder that runs share (stylegan2-ada-pytorch keeps
its real statistics the same way). Its file is named by a hash of everything the statistics
depend on: the images (their fingerprint, data.py), their size, the feature network's weights,
N, the seed and the batch size. Changed data gets another name, never stale statistics; a file
that does not read back whole, or whose record does not match, is computed again.
"""
import dataclasses
import hashlib
import json
import os
import re

import numpy as np

import config
from metrics import classifier, distances, features, precision_recall
from model import label_vector
from utils import files

CACHE_DIR = os.path.join("runs", "cache")
BATCH_SIZE = 100  # images per batch through the networks
EVAL_SAMPLES = 10_000  # per score while training: a fifth of evaluate.py's, five times as fast


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """What scoring needs, prepared once for every score of a run."""
    network: object  # the feature network: a Keras model, images in [-1, 1] -> [batch, d]
    name: str  # its name, in the scores' names (fid_NAME)
    resize: str  # how images are fitted to its input, in words
    real: distances.Statistics  # of the real images' features
    count: int  # N: images a side
    batch_size: int  # images per batch through the networks
    seed: int  # of the generated side's z and of KID's subsets


def prepare(images, features_flag, *, count, seed, batch_size=BATCH_SIZE, cache_dir=CACHE_DIR,
            what="real"):
    """The Evaluator of count images of images (a data.Data) through the feature network that
    features_flag names; the real statistics from the cache when they are there."""
    network, name = features.feature_network(features_flag)
    resize = features.describe_input(network, images.image_size, images.channels)
    key = dict(images=images.fingerprint, image_size=images.image_size, channels=images.channels,
               features=features.fingerprint(features_flag), resize=resize, count=count,
               seed=seed, batch_size=batch_size, kept=distances.KEPT)
    path = cache_path(cache_dir, key)
    real = read_cached(path, key)
    if real is None:
        real = features.feature_statistics(features.real_pixels(images.stream(), count, batch_size),
                                           network, count, what)
        write_cached(path, key, real)
    return Evaluator(network, name, resize, real, count, batch_size, seed)


def cache_path(cache_dir, key):
    text = json.dumps(key, sort_keys=True)
    return os.path.join(cache_dir, f"real_{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz")


def read_cached(path, key):
    """The statistics saved at path under key, or None: missing, damaged, or another key's."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            state = {name: saved[name] for name in saved.files}
        if json.loads(str(state.pop("key"))) != key:
            raise ValueError("its record is another data's")
        real = distances.Statistics.from_state(state)
        mu, sigma = real.mu_sigma()
        kept = real.kept_features()
        whole = min(real.count, distances.KEPT) == min(key["count"], distances.KEPT) == len(kept)
        if not (whole and sigma.shape == mu.shape * 2 and np.isfinite(sigma).all()
                and np.isfinite(kept).all()):
            raise ValueError("its arrays do not fit together")
    except Exception as e:  # noqa: BLE001 (whatever is wrong with it, it is computed again)
        print(f"The cached real statistics {path} cannot be used ({type(e).__name__}: {e}): "
              "computing them again.", flush=True)
        return None
    print(f"Real statistics from the cache: {path}", flush=True)
    return real


def write_cached(path, key, real):
    try:
        files.make_folder(os.path.dirname(path), "check its permissions")
        with files.replacing(path, suffix=".npz") as tmp:
            np.savez(tmp, key=np.array(json.dumps(key, sort_keys=True)), **real.state())
    except (OSError, config.ConfigError) as e:  # the scores stand without the cache
        print(f"Cannot cache the real statistics in {path} ({e}); going on without.", flush=True)


def check_scorable(arch):
    """Refuse a generator that cannot be scored: one conditioned on attributes."""
    if arch.labels == "attributes":
        raise config.ConfigError("scoring a run conditioned on attributes is not supported: "
                                 "it needs the attributes' joint distribution of the real images")


def scored_labels(arch, count):
    """y of a conditional generator's scored images: the classes in turn, as many of each (the
    real images of a class-labelled set are about balanced). None for an unconditional one."""
    check_scorable(arch)
    if not arch.labels:
        return None
    return label_vector(arch, np.arange(count) % arch.y_dim).numpy()


def reads_digits(arch):
    """Whether the bundled classifier can tell if a digit is the one asked for."""
    return (arch.labels == "classes" and arch.label_names == tuple("0123456789")
            and arch.channels == 1)


def classified(pixel_batches, network, predictions):
    """The batches as they are, each classified by network on the way into predictions."""
    for pixels in pixel_batches:
        logits = network(features.network_input(pixels, network), training=False)
        predictions.append(np.argmax(logits, axis=1))
        yield pixels


def real_by_class(labelled, evaluator, what="real, by class"):
    """{class: Statistics} of the real images of a class-labelled data.Data, the same first
    count images as the evaluator's."""
    pixels = features.real_pixels(labelled.stream(), evaluator.count, evaluator.batch_size)
    return features.feature_statistics(pixels, evaluator.network, evaluator.count, what,
                                       by_class=True)[1]


def score(evaluator, generator, what="generated", real_classes=None):
    """The scores of generator's sampler, as a dict that evaluate.py and train.py record. Of a
    conditional MNIST run, also its conditional accuracy: the share of digits that the bundled
    classifier reads as the digit asked for. real_classes (real_by_class): also the FID of
    each class whose images, real and generated, outnumber the features (so that both
    covariances can have full rank)."""
    count, seed = evaluator.count, evaluator.seed
    y = scored_labels(generator.arch, count)
    pixels = features.generated_pixels(generator, count, evaluator.batch_size, seed, y)
    predictions = []
    if reads_digits(generator.arch):
        pixels = classified(pixels, classifier.load(), predictions)
    by_class = real_classes is not None and y is not None
    if by_class:
        classes, size = np.argmax(y, axis=1), evaluator.batch_size
        pixels = ((p, classes[i * size:(i + 1) * size]) for i, p in enumerate(pixels))
    generated = features.feature_statistics(pixels, evaluator.network, count, what, by_class)
    per_class = {}
    if by_class:
        generated, generated_classes = generated
        names = generator.arch.label_names
        per_class = {names[c]: distances.frechet_distance(*real_classes[c].mu_sigma(),
                                                          *side.mu_sigma())
                     for c, side in generated_classes.items() if c in real_classes
                     and min(side.count, real_classes[c].count) > len(side.shift)}
    real = evaluator.real
    fid = distances.frechet_distance(*real.mu_sigma(), *generated.mu_sigma())
    real_kept, generated_kept = real.kept_features(), generated.kept_features()
    kid_mean, kid_std = distances.kid(real_kept[:distances.KID_KEPT],
                                      generated_kept[:distances.KID_KEPT], seed=seed)
    precision, recall = precision_recall.precision_recall(real_kept, generated_kept)
    return dict(fid=fid, kid_mean=kid_mean, kid_std=kid_std, precision=precision, recall=recall,
                num_real=real.count, num_generated=generated.count, features=evaluator.name,
                resize=evaluator.resize, seed=seed, kid_subsets=distances.KID_SUBSETS,
                kid_subset_size=min(distances.KID_SUBSET_SIZE, count), pr_k=precision_recall.K,
                pr_num_real=len(real_kept), pr_num_generated=len(generated_kept),
                **({"conditional_accuracy": float(np.mean(np.concatenate(predictions)
                                                         == np.argmax(y, axis=1)))}
                   if predictions else {}),
                **({"fid_per_class": per_class} if per_class else {}))


def result_name(result):
    """FEATURES, and _noema for the generator as trained of a run that has an average (which
    its own scores are of), so that neither's scores replace the other's."""
    return result["features"] + ("_noema" if result.get("noema") else "")


def scalars(result):
    """{TensorBoard tag: value} of a result: eval/METRIC_NAME."""
    name = result_name(result)
    values = {f"eval/{metric}_{name}": result[key] for metric, key in
              [("fid", "fid"), ("kid", "kid_mean"), ("precision", "precision"),
               ("recall", "recall")]}
    if "conditional_accuracy" in result:
        values["eval/conditional_accuracy"] = result["conditional_accuracy"]
    return values


def summary(result):
    """A result in one line."""
    accuracy = result.get("conditional_accuracy")
    return (f"FID {result['fid']:.4f}  KID {result['kid_mean']:.5f} ± {result['kid_std']:.5f}  "
            f"precision {result['precision']:.4f}  recall {result['recall']:.4f}  "
            + (f"conditional accuracy {accuracy:.4f}  " if accuracy is not None else "")
            + "at step "
            f"{result['step']}: {result['features']} features, resize {result['resize']}, "
            f"{result['num_real']:,} real and {result['num_generated']:,} generated images")


def recorded(run_dir, name):
    """{step: result} of every score the run has recorded under name (result_name)."""
    found = {}
    for file in sorted(os.listdir(run_dir.eval)) if os.path.isdir(run_dir.eval) else []:
        match = re.fullmatch(rf"step_(\d+)_{re.escape(name)}\.json", file)
        if match:
            with open(os.path.join(run_dir.eval, file)) as f:
                found[int(match.group(1))] = json.load(f)
    return found


def record(run_dir, result):
    """RUN/eval/step_STEP_NAME.json; returns its path."""
    path = run_dir.eval_json(result["step"], result_name(result))
    files.write_json(path, result)
    return path


def plot_fid(results, path, title):
    """FID against step, as a PNG: the curve TensorBoard shows, to keep beside the scores."""
    import matplotlib  # imported here: only evaluate.py --all draws
    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4), dpi=100)
    axes.plot([r["step"] for r in results], [r["fid"] for r in results], marker="o")
    axes.set(xlabel="step", ylabel=f"FID ({results[0]['features']} features)", title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with files.replacing(path, suffix=".png") as tmp:
        figure.savefig(tmp)
    pyplot.close(figure)
