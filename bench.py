"""Measure the train step against this machine's limits; prints numbers, asserts nothing.

    python bench.py            # a table, in about 4 minutes on 2 CPU cores
    python bench.py --json     # and one JSON object as the last line

train_img_per_s       images/s through the real train step of the 64x64 CelebA model: one D
                      and one G update per step, batch 64, 5x5 kernels, input already in memory,
                      median of timed windows after warm-up (_k4: 4x4 kernels, as pytorch/examples)
flops_per_img         floating-point operations per image per step, counted from the model's
                      layers (forward and backward of both updates)
peak_flops            this machine's float32 matrix-multiply rate (the faster of NumPy and
                      TensorFlow)
roofline_frac         train_img_per_s * flops_per_img / peak_flops
sample_img_per_s      the inference-mode sampler
pipeline_img_per_s    the TFRecord input pipeline alone (prepro.py's output, data.load)

The step is timed as train.py runs it by default on a CPU (oneDNN's kernels, without XLA).
Beside it, in the same run: with --levers the step with XLA (_xla), and, when PyTorch is
installed, the same step in PyTorch (benchmarks/torch_reference.py, torch_img_per_s) with the
ratios vs_torch = train_img_per_s / torch_img_per_s. With --few_images, the 5x5 step with each
of train.py's levers for few images (train_img_per_s_LEVER; an ADA step augments every image
and keeps those its p chooses, so it costs what p = 1 costs). Every figure but the pipeline's comes from
windows that take turns (benchmarks/timing.py), the matrix product's too: a change in the load
of a shared machine falls on all of them alike, and the ratios between them hold.
"""
import json
import os

from utils import tf_setup  # noqa: F401 (first: TensorFlow's environment, before it loads)

import tensorflow as tf
from absl import flags

from benchmarks import input_pipeline, timing, train_step
from utils import cli

FLAGS = flags.FLAGS
KERNELS = [(5, ""), (4, "_k4")]  # kernel size, suffix of its figures
LEVERS = {  # --few_images: suffix -> step_window's options (TTUR only sets two rates: no cost)
    "translation": {"policy": ("translation",)}, "cutout": {"policy": ("cutout",)},
    "color": {"policy": ("color",)},
    "ada": {"policy": ("translation", "cutout", "color"), "ada_target": 0.6},
    "hinge": {"loss": "hinge"}, "spectral_norm": {"spectral_norm": True},
}


def run():
    tf.get_logger().setLevel("ERROR")  # the solvers share one traced train_step: retracing is expected
    results = {"device": tf.config.list_physical_devices("GPU") and "GPU" or
               f"CPU, {os.cpu_count()} cores", "batch_size": FLAGS.batch_size}
    windows, solvers = {}, {}
    served = train_step.torch_windows(FLAGS.batch_size)
    for k, suffix in KERNELS:
        windows["train_img_per_s" + suffix], solvers[k] = train_step.step_window(k, FLAGS.batch_size)
        if FLAGS.levers:
            windows[f"train_img_per_s{suffix}_xla"], _ = train_step.step_window(
                k, FLAGS.batch_size, jit_compile=True)
        if served:
            windows["torch_img_per_s" + suffix] = served[1][k]
        results["flops_per_img" + suffix] = train_step.flops_per_image(solvers[k].generator,
                                                                       solvers[k].discriminator)
    if FLAGS.few_images:
        for name, options in LEVERS.items():
            windows[f"train_img_per_s_{name}"], _ = train_step.step_window(5, FLAGS.batch_size,
                                                                           **options)
    z = solvers[5].sample_z(FLAGS.batch_size, 0)
    sample = tf.function(solvers[5].generator.sample)
    windows["sample_img_per_s"] = timing.timed(lambda: sample(z).numpy(), FLAGS.batch_size)
    for library, measure in train_step.matmul_windows().items():
        windows["peak_flops_" + library] = measure
    results.update(timing.interleaved(windows, FLAGS.windows, FLAGS.window_seconds))
    if served:
        served[0].stdin.close()
        served[0].wait()
    peaks = {k[len("peak_flops_"):]: results.pop(k) for k in list(results)
             if k.startswith("peak_flops_")}
    results["peak_flops"], results["peak_flops_by_library"] = max(peaks.values()), peaks
    results["pipeline_img_per_s"] = input_pipeline.generated_pipeline_rate(
        1000, FLAGS.batch_size, FLAGS.window_seconds)
    for _, suffix in KERNELS:
        ours, torch_ = results["train_img_per_s" + suffix], results.get("torch_img_per_s" + suffix)
        results["roofline_frac" + suffix] = (ours * results["flops_per_img" + suffix]
                                             / results["peak_flops"])
        results["vs_torch" + suffix] = torch_ and ours / torch_
    report(results)
    if FLAGS.json:
        print(json.dumps(results))


def report(results):
    rows = []
    for k, suffix in KERNELS:
        ours, torch_ = results["train_img_per_s" + suffix], results.get("torch_img_per_s" + suffix)
        rows += [(f"train step, {k}x{k} kernels", ours,
                  f"{results['flops_per_img' + suffix] / 1e9:.2f} GFLOP/img, "
                  f"{100 * results['roofline_frac' + suffix]:.0f}% of peak")]
        if FLAGS.levers:
            xla = results[f"train_img_per_s{suffix}_xla"]
            rows += [("  same, with XLA", xla, f"XLA: x{xla / ours:.2f}")]
        rows += [("  same, PyTorch", torch_,
                  f"ours / PyTorch: {results['vs_torch' + suffix]:.2f}" if torch_ else "not installed")]
    if FLAGS.few_images:
        plain = results["train_img_per_s"]
        for name in LEVERS:
            rate = results[f"train_img_per_s_{name}"]
            rows += [(f"5x5 step with {name}", rate, f"x{rate / plain:.3f} of the step")]
    rows += [("sampler (inference mode)", results["sample_img_per_s"], ""),
             ("input pipeline (TFRecords)", results["pipeline_img_per_s"], ""),
             ("float32 matmul peak, GFLOP/s", results["peak_flops"] / 1e9,
              ", ".join(f"{k} {v / 1e9:.0f}" for k, v in results["peak_flops_by_library"].items()))]
    print(f"batch {FLAGS.batch_size}, {results['device']}; images/s unless said")
    for name, value, note in rows:
        print(f"{name:34s} {'-' if value is None else f'{value:10.1f}':>10s}   {note}")


def define_flags():
    flags.DEFINE_integer("batch_size", 64, "images per step")
    flags.DEFINE_integer("windows", 3, "timed windows per figure (the median is reported)")
    flags.DEFINE_float("window_seconds", 4.0, "length of each timed window")
    flags.DEFINE_bool("json", False, "also print every figure as one JSON object, on the last line")
    flags.DEFINE_bool("levers", False, "also the step with XLA (_xla), a minute more")
    flags.DEFINE_bool("few_images", False, "also the 5x5 step with each lever for few images "
                      "(augmentations, ADA, the hinge loss, spectral norm), two minutes more")


if __name__ == "__main__":
    cli.main(run, define_flags)
