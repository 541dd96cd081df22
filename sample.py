"""Look at what the networks learnt: sample grids, walks in z, the paper's vector arithmetic,
samples beside their nearest training images, and what the discriminator's filters see.

    python sample.py --out_dir runs/mnist                      # 64 samples: grid PNG + their z
    python sample.py --out_dir runs/mnist --mode interpolate   # rows walking from z to z, PNG + GIF
    python sample.py --out_dir runs/mnist --mode arithmetic --a 3,17,40 --b 5,9,22 --c 1,8,30
    python sample.py --out_dir runs/mnist_conditional --label 3,7   # rows of 3s and of 7s
    python sample.py --out_dir runs/mnist_train --mode neighbours   # memorised? (metrics/neighbours.py)
    python sample.py --out_dir runs/mnist --mode filters            # guided backpropagation

Every image comes from the generator in inference mode (Generator.sample, the seminar's quiz), so
an image depends on its own z only. Files go to RUN/generated/, named by mode and seed; the same
command writes the same bytes.
"""
import dataclasses
import math
import os

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import numpy as np
from absl import flags

import config
import data
from metrics import evaluation, features, probe
from metrics import neighbours as neighbours_lib
from model import draw_z, each_label, label_vector, sample_pixels, to_pixels
from training.checkpoint import EMA_HELP, load_discriminator, load_generator
from training.run_dir import RunDir
from utils import cli, files

FLAGS = flags.FLAGS

PERTURBATIONS = 8  # the paper's figure 7 shows the result and 8 perturbations of it
CONDITIONAL_ROW = 8  # samples per label in a conditional run's grid, unless --num_samples
NEIGHBOUR_ROWS = 8  # samples shown with their nearest training images
NEIGHBOUR_SAMPLES = 1000  # generated images whose distances are compared (at most the held out)
NEIGHBOUR_SEARCH = 50_000  # training images searched at most: all of mnist, a quarter of CelebA
FILTERS = 8  # of D's last convolution layer, the strongest, shown
FILTER_IMAGES = 500  # real images searched for what excites each filter most


def generate(generator, z, batch_size, y=None):
    """uint8 images of the sampler, batch by batch."""
    return np.concatenate(list(sample_pixels(generator, z, batch_size, y)))


def requested_labels(arch, label, attributes):
    """(names, y): the rows a conditional run is asked for, as --label classes (default: each
    class) or --attributes NAME=0|1,... (the others 0; default: each attribute alone)."""
    if not arch.labels:
        if label or attributes:
            raise config.ConfigError("this run is not conditional: --label and --attributes "
                                     "need a run trained with --conditional")
        return None, None
    names = list(arch.label_names)
    if arch.labels == "classes":
        if attributes:
            raise config.ConfigError("this run is conditioned on classes, not attributes: use "
                                     f"--label with one of {', '.join(names)}")
        rows = [names.index(l) if l in names else None for l in (label or names)]
        if None in rows:
            wrong = (label or names)[rows.index(None)]
            raise config.ConfigError(f"--label {wrong} is not a class of this run: choose from "
                                     f"{', '.join(names)}")
        return [names[r] for r in rows], label_vector(arch, rows).numpy()
    if label:
        raise config.ConfigError("this run is conditioned on attributes: use --attributes "
                                 f"NAME=0|1,... with names from {', '.join(names)}")
    if not attributes:
        return names, label_vector(arch, each_label(arch)).numpy()
    y = np.zeros((1, len(names)), np.float32)
    for item in attributes:
        name, _, value = item.partition("=")
        if name not in names or value not in ("0", "1"):
            raise config.ConfigError(f"--attributes {item}: give NAME=0 or NAME=1, with names "
                                     f"from {', '.join(names)}")
        y[0, names.index(name)] = float(value)
    return [",".join(attributes)], label_vector(arch, y).numpy()


def slerp(a, b, t):
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents): it keeps the norm
    that z of many dimensions concentrate at, which the straight line shrinks midway."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.dot(a64, b64) / (np.linalg.norm(a64) * np.linalg.norm(b64))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:  # (anti)parallel: the circle is not defined, the line is
        return lerp(a, b, t)
    return ((np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)).astype(np.float32)


def lerp(a, b, t):
    return ((1 - t) * a.astype(np.float64) + t * b.astype(np.float64)).astype(np.float32)


def grid_z_path(sample_dir, seed):
    return os.path.join(sample_dir, f"grid_seed{seed}.npy")


def load_grid_z(sample_dir, seed, indices, flag):
    """The z of the named samples of the seed's saved grid."""
    path = grid_z_path(sample_dir, seed)
    if not os.path.isfile(path):
        raise config.ConfigError(f"{path} not found: make that grid first with "
                                 f"python sample.py --mode grid --seed {seed}")
    z = np.load(path)
    try:
        indices = [int(i) for i in indices]
    except ValueError:
        raise config.ConfigError(f"--{flag} takes sample numbers, such as 3,17,40") from None
    bad = [i for i in indices if not 0 <= i < len(z)]
    if bad:
        raise config.ConfigError(f"--{flag} {bad[0]} is not a sample of {path}: "
                                 f"use 0 to {len(z) - 1}")
    return z[indices]


def grid(generator, sample_dir, *, seed, num_samples, batch_size=256, labels=(None, None)):
    """num_samples z of the seed; in a conditional run, a row of them for each asked label."""
    names, y = labels
    z = draw_z(num_samples, generator.arch.z_dim, seed)
    if y is not None:
        path = os.path.join(sample_dir, f"grid_seed{seed}_labels.png")
        images = generate(generator, np.tile(z, (len(y), 1)), batch_size,
                          np.repeat(y, len(z), axis=0))
        files.write_png(path, files.image_grid(images, len(z)))
        return [path, "(rows: " + "; ".join(names) + ")"]
    cols = math.ceil(math.sqrt(len(z)))
    path = os.path.join(sample_dir, f"grid_seed{seed}.png")
    files.write_png(path, files.image_grid(generate(generator, z, batch_size), cols))
    files.write_npy(grid_z_path(sample_dir, seed), z)
    return [path, grid_z_path(sample_dir, seed),
            f"(sample i is at row i // {cols}, column i % {cols}, counting from 0)"]


def interpolate(generator, sample_dir, *, seed, pairs, steps, interpolation="slerp",
                indices=None, batch_size=256, labels=(None, None)):
    """Walks between pairs of z: those of the seed's grid that indices names, or fresh ones.
    In a conditional run, walks between pairs of labels instead, each on a z of its own."""
    names, y = labels
    if y is not None:
        return walk_in_y(generator, sample_dir, seed=seed, steps=steps, names=names, y=y,
                         batch_size=batch_size)
    if indices:
        if len(indices) % 2:
            raise config.ConfigError("--indices takes pairs: give an even number of samples")
        ends = load_grid_z(sample_dir, seed, indices, "indices")
    else:
        ends = draw_z(2 * pairs, generator.arch.z_dim, seed)
    path_between = slerp if interpolation == "slerp" else lerp
    ts = np.linspace(0.0, 1.0, steps)
    z = np.stack([path_between(a, b, t) for a, b in zip(ends[0::2], ends[1::2]) for t in ts])
    pixels = generate(generator, z, batch_size)
    name = os.path.join(sample_dir, f"interpolate_{interpolation}_seed{seed}")
    files.write_png(name + ".png", files.image_grid(pixels, steps))  # one walk per row
    walks = pixels.reshape(len(ends) // 2, steps, *pixels.shape[1:])
    frames = [files.image_grid(walks[:, t]) for t in range(steps)]
    files.write_gif(name + ".gif", frames + frames[-2:0:-1])  # there and back, so the loop is smooth
    return [name + ".png", name + ".gif"]


def walk_in_y(generator, sample_dir, *, seed, steps, names, y, batch_size):
    """One row per pair of asked labels: z fixed, y along the straight line from one to the
    other, as a conditional generator takes any mixture of its labels."""
    if len(y) < 2 or len(y) % 2:
        raise config.ConfigError("a conditional run walks from label to label: give pairs, "
                                 "such as --label 3,8 (or --label 1,7,0,6)")
    ends = draw_z(len(y) // 2, generator.arch.z_dim, seed)
    ts = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    walks = np.concatenate([(1 - ts) * a + ts * b for a, b in zip(y[0::2], y[1::2])])
    pixels = generate(generator, np.repeat(ends, steps, axis=0), batch_size, walks)
    name = os.path.join(sample_dir, f"interpolate_labels_seed{seed}")
    files.write_png(name + ".png", files.image_grid(pixels, steps))
    frames = [files.image_grid(pixels.reshape(len(ends), steps, *pixels.shape[1:])[:, t])
              for t in range(steps)]
    files.write_gif(name + ".gif", frames + frames[-2:0:-1])
    rows = [f"{a} -> {b}" for a, b in zip(names[0::2], names[1::2])]
    return [name + ".png", name + ".gif", "(rows: " + "; ".join(rows) + ")"]


def arithmetic(generator, sample_dir, *, seed, a, b, c, noise=0.25, batch_size=256):
    """The paper's figure 7: the mean z of each group (a, b, c: sample numbers of the seed's
    grid), then a - b + c and its perturbations."""
    if not (a and b and c):
        raise config.ConfigError("--mode arithmetic needs --a, --b and --c: sample numbers from "
                                 f"the grid of --seed {seed} (python sample.py --mode grid)")
    groups = [load_grid_z(sample_dir, seed, indices, flag)
              for indices, flag in [(a, "a"), (b, "b"), (c, "c")]]
    means = [g.mean(axis=0) for g in groups]
    result = means[0] - means[1] + means[2]
    noise = np.random.default_rng(seed).uniform(-noise, noise, (PERTURBATIONS, len(result)))
    answer = np.concatenate([result[None], result + noise]).astype(np.float32)
    # Rows: each group's samples then its mean; last row: the result and its perturbations.
    rows = [np.concatenate([g, m[None]]) for g, m in zip(groups, means)] + [answer]
    cols = max(len(r) for r in rows)
    images = [generate(generator, r, batch_size) for r in rows]
    blank = np.zeros_like(images[0][:1])
    padded = np.concatenate([np.concatenate([im] + [blank] * (cols - len(im))) for im in images])
    name = os.path.join(sample_dir, f"arithmetic_seed{seed}")
    files.write_png(name + ".png", files.image_grid(padded, cols))
    files.write_npy(name + ".npy", answer)
    return [name + ".png", name + ".npy"]


def run_data(run_dir, arch, split):
    """The Data of a split of the run's images, as its flags.json asks for them."""
    request = dataclasses.replace(data.Request.from_flags(run_dir.read_flags()), split=split,
                                  image_size=arch.image_size, conditional=False)
    return data.load(request, 100)


def run_images(run_dir, arch, split, count=None):
    """The first count real images (default: all) of a split of the run's images, as uint8
    pixels."""
    return to_pixels(data.take(run_data(run_dir, arch, split), count)).numpy()


def neighbours(generator, run_dir, sample_dir, *, seed, k, features_flag, batch_size):
    """Samples beside their k nearest training images, in pixel space and in the feature space
    of features_flag; and, when the run kept images out of its training (a test split, or the
    images --max_images left out), the distance of each generated image to its nearest training
    image against a held-out real image's."""
    split = data.Request.from_flags(run_dir.read_flags()).split
    images = run_data(run_dir, generator.arch, split)
    training = to_pixels(data.take(images, NEIGHBOUR_SEARCH)).numpy()
    held_out = (run_images(run_dir, generator.arch, "test") if split == "train" else
                None if images.held_out is None else to_pixels(images.held_out[0]).numpy())
    count = min(NEIGHBOUR_SAMPLES, len(held_out) if held_out is not None else NEIGHBOUR_SAMPLES)
    y = evaluation.scored_labels(generator.arch, count)
    generated = generate(generator, draw_z(count, generator.arch.z_dim, seed), batch_size, y)
    network, name = features.feature_network(features_flag)
    vectors = {side: features.vectors(pixels, network) for side, pixels in
               [("generated", generated), ("training", training)]}
    rows = generated[:NEIGHBOUR_ROWS]
    by_pixels = neighbours_lib.nearest(rows, training, k)[1]
    by_features = neighbours_lib.nearest(vectors["generated"][:NEIGHBOUR_ROWS],
                                         vectors["training"], k)[1]
    picture = np.concatenate([np.concatenate([row[None], training[p], training[f]])
                              for row, p, f in zip(rows, by_pixels, by_features)])
    path = os.path.join(sample_dir, f"neighbours_seed{seed}")
    files.write_png(path + ".png", files.image_grid(picture, 1 + 2 * k))
    written = [path + ".png", f"(each row: a sample, its {k} nearest of {len(training):,} "
                              f"training images by pixels, then by {name} features)"]
    if held_out is None:
        return written + ["(the run kept no images out of its training to compare distances "
                          "with: mnist and tfds runs keep a test split with --split train, and "
                          "--max_images keeps the rest of any dataset)"]
    report = {"pixels": neighbours_lib.memorisation(generated, held_out, training),
              "features": neighbours_lib.memorisation(
                  vectors["generated"], features.vectors(held_out, network), vectors["training"]),
              "feature_network": name, "images": count, "seed": seed}
    files.write_json(path + ".json", report)
    return written + [path + ".json"] + [
        f"({space}: median distance to the nearest training image {r['generated_median']:.2f} "
        f"generated, {r['held_out_median']:.2f} held out, ratio {r['ratio']:.2f}"
        f"{', memorised' if r['memorised'] else ''})" for space, r in
        [("pixels", report["pixels"]), (name + " features", report["features"])]]


def visible(gradients):
    """Each gradient map stretched to 0-255, to be seen."""
    low = gradients.min(axis=(1, 2, 3), keepdims=True)
    high = gradients.max(axis=(1, 2, 3), keepdims=True)
    return np.round(255 * (gradients - low) / np.maximum(high - low, 1e-12)).astype(np.uint8)


def filters(run_dir, checkpoint_path, sample_dir, *, seed):
    """What the strongest filters of D's last convolution layer respond to, the trained D
    beside an untrained one: the images that excite each most, and their guided gradients.
    Returns the files written (and a note), and which discriminator it read."""
    trained, step, _ = load_discriminator(run_dir, checkpoint_path)
    if trained.arch.labels:
        raise config.ConfigError("--mode filters takes an unconditional run's discriminator")
    untrained = probe.untrained(trained.arch, run_dir.read_flags().get("init", config.INIT), seed)
    images = run_images(run_dir, trained.arch, None, FILTER_IMAGES) / 127.5 - 1.0
    rows = []
    for discriminator in (trained, untrained):
        found = probe.guided_backprop(discriminator, images.astype(np.float32), FILTERS)
        rows += [to_pixels(np.stack([image for image, _ in found])).numpy(),
                 visible(np.stack([gradient for _, gradient in found]))]
    path = os.path.join(sample_dir, f"filters_step{step}_seed{seed}.png")
    files.write_png(path, files.image_grid(np.concatenate(rows), FILTERS))
    return [path, f"(rows: the images that excite the trained D's {FILTERS} strongest last-layer "
                  "filters most, their guided backpropagation; the same for an untrained D)"], \
        f"the discriminator at step {step}"


def from_generator(snapshot, run_dir, sample_dir):
    """What the mode asks of the generator of the snapshot; the files written, and notes."""
    generator = snapshot.generator
    labels = requested_labels(generator.arch, FLAGS.label, FLAGS.attributes)
    if labels[1] is not None and FLAGS.mode in ("arithmetic", "neighbours"):
        raise config.ConfigError(f"--mode {FLAGS.mode} is for unconditional runs: in this one, "
                                 "ask for labels with --mode grid or walk between them with "
                                 "--mode interpolate")
    if FLAGS.mode == "grid":
        per_row = labels[1] is not None and not FLAGS["num_samples"].present
        return grid(generator, sample_dir, seed=FLAGS.seed,
                    num_samples=CONDITIONAL_ROW if per_row else FLAGS.num_samples,
                    batch_size=FLAGS.batch_size, labels=labels)
    if FLAGS.mode == "interpolate":
        return interpolate(generator, sample_dir, seed=FLAGS.seed, pairs=FLAGS.pairs,
                           steps=FLAGS.steps, interpolation=FLAGS.interpolation,
                           indices=FLAGS.indices, batch_size=FLAGS.batch_size, labels=labels)
    if FLAGS.mode == "neighbours":
        default = data.dataset(run_dir.read_flags()["dataset"]).eval_features
        return neighbours(generator, run_dir, sample_dir, seed=FLAGS.seed, k=FLAGS.k,
                          features_flag=FLAGS.features or default, batch_size=FLAGS.batch_size)
    return arithmetic(generator, sample_dir, seed=FLAGS.seed, a=FLAGS.a, b=FLAGS.b, c=FLAGS.c,
                      noise=FLAGS.noise, batch_size=FLAGS.batch_size)


def run():
    if not FLAGS.out_dir:
        raise config.ConfigError("--out_dir is required: the run directory that train.py wrote")
    for name in ("num_samples", "pairs", "batch_size", "k"):
        if FLAGS[name].value <= 0:
            raise config.ConfigError(f"--{name} must be a positive number, not {FLAGS[name].value}")
    if FLAGS.steps < 2:
        raise config.ConfigError("--steps must be at least 2 (the two ends)")
    run_dir = RunDir(FLAGS.out_dir)
    sample_dir = run_dir.generated
    if FLAGS.mode == "filters":
        files.make_folder(sample_dir, "check the run directory's permissions")
        written, source = filters(run_dir, FLAGS.checkpoint, sample_dir, seed=FLAGS.seed)
    else:
        snapshot = load_generator(run_dir, FLAGS.checkpoint, FLAGS.ema)
        files.make_folder(sample_dir, "check the run directory's permissions")
        written, source = from_generator(snapshot, run_dir, sample_dir), snapshot.describe()
    print(f"{FLAGS.mode} from {source}: " + " ".join(written))


def define_flags():
    flags.DEFINE_string("out_dir", None, "run directory that train.py wrote")
    flags.DEFINE_string("checkpoint", None, "a checkpoint to use instead of the run's latest")
    flags.DEFINE_bool("ema", True, EMA_HELP)
    flags.DEFINE_enum("mode", "grid", ["grid", "interpolate", "arithmetic", "neighbours",
                                       "filters"],
                      "grid: N samples; interpolate: walks between pairs of z; arithmetic: a - b + "
                      "c; neighbours: samples beside their nearest training images; filters: what "
                      "D's last filters see")
    flags.DEFINE_integer("seed", 0, "seed for z (and for the arithmetic's perturbations)")
    flags.DEFINE_integer("num_samples", config.NUM_SAMPLES, "grid: how many samples (of a "
                         f"conditional run: per label, default {CONDITIONAL_ROW})")
    flags.DEFINE_list("label", None, "a conditional run's classes, one grid row each (default: "
                      "every class); interpolate: pairs to walk between, such as 3,8")
    flags.DEFINE_list("attributes", None, "a run conditioned on attributes: NAME=0|1,... (the "
                      "others 0), such as Smiling=1,Male=0; default: each attribute alone")
    flags.DEFINE_integer("pairs", 8, "interpolate: how many walks (rows)")
    flags.DEFINE_integer("steps", 10, "interpolate: images per walk, both ends included")
    flags.DEFINE_enum("interpolation", "slerp", ["slerp", "linear"],
                      "interpolate: along the great circle (slerp) or the straight line")
    flags.DEFINE_list("indices", None, "interpolate: walk between these samples of the seed's grid, "
                      "taken in pairs (for example 3,17,40,5); default: fresh z")
    flags.DEFINE_list("a", None, "arithmetic: indices into the seed's grid, averaged (the paper "
                      "averages 3), e.g. smiling woman")
    flags.DEFINE_list("b", None, "arithmetic: indices subtracted, e.g. neutral woman")
    flags.DEFINE_list("c", None, "arithmetic: indices added, e.g. neutral man")
    flags.DEFINE_float("noise", 0.25, "arithmetic: perturbations of the result by U(-noise, noise), "
                       "as in the paper's figure 7")
    flags.DEFINE_integer("batch_size", 256, "images generated at once (any N fits in memory)")
    flags.DEFINE_integer("k", 5, "neighbours: the nearest training images shown beside each")
    flags.DEFINE_string("features", None, "neighbours: the feature space, as evaluate.py's "
                        "--features (default: the run's dataset's, mnist for mnist)")


if __name__ == "__main__":
    cli.main(run, define_flags)
