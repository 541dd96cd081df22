"""Measure the train step against this machine's limits; prints numbers, asserts nothing.

    python bench.py            # a table, in about 3 minutes on 2 CPU cores
    python bench.py --json     # and one JSON object as the last line

train_img_per_s       images/s through the real train step of the 64x64 CelebA model: one D
                      and one G update per step, batch 64, 5x5 kernels, input already in memory,
                      median of timed windows after warm-up (_k4: 4x4 kernels, as pytorch/examples)
flops_per_img         floating-point operations per image per step, counted from the model's
                      layers (forward and backward of both updates)
peak_flops            this machine's float32 matrix-multiply rate, measured now
roofline_frac         train_img_per_s * flops_per_img / peak_flops
sample_img_per_s      the inference-mode sampler
pipeline_img_per_s    the TFRecord input pipeline alone (prepro.py's output, data.load)

The step is timed as train.py runs it by default on a CPU (oneDNN's kernels, without XLA).
Beside it, in the same run: with --levers the step with XLA (_xla), and, when PyTorch is
installed, the same step in PyTorch (bench_torch.py, torch_img_per_s) with the ratios
vs_torch = train_img_per_s / torch_img_per_s.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cli  # noqa: F401 (first: TensorFlow's environment, as the commands set it)

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import data
from model import Discriminator, Generator
from solver import Solver

flags.DEFINE_integer("batch_size", 64, "images per step")
flags.DEFINE_integer("windows", 3, "timed windows per figure (the median is reported)")
flags.DEFINE_float("window_seconds", 4.0, "length of each timed window")
flags.DEFINE_bool("json", False, "also print every figure as one JSON object, on the last line")
flags.DEFINE_bool("levers", False, "also the step with XLA (_xla), a minute more")
FLAGS = flags.FLAGS


def window(run, images_per_call, seconds):
    """Images/s of calling run() for at least `seconds`."""
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - start)


def timed(run, images_per_call, warmup=2):
    """A window function for interleaved(), after warm-up calls (tracing, first allocations)."""
    for _ in range(warmup):
        run()
    return lambda seconds: window(run, images_per_call, seconds)


def interleaved(windows):
    """{name: window function} -> {name: median images/s}. The windows take turns, so a change
    in the load of this shared machine falls on every figure alike and their ratios hold."""
    rates = {name: [] for name in windows}
    for _ in range(FLAGS.windows):
        for name, measure in windows.items():
            rates[name].append(measure(FLAGS.window_seconds))
    return {name: statistics.median(r) for name, r in rates.items()}


def celeba_models(kernel_size):
    keras.utils.set_random_seed(0)
    return Generator(64, 3, kernel_size=kernel_size), Discriminator(64, 3, kernel_size=kernel_size)


def layer_flops(network):
    """[(forward FLOPs per image, layer)] for the convolutions and dense layers, from their
    shapes: 2 per multiply-add."""
    found = []
    for layer in network.net.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):  # each input pixel scatters k*k*Cout
            k1, k2, c_out, c_in = layer.kernel.shape
            _, h, w, _ = layer.input.shape
            found.append((2 * k1 * k2 * c_in * c_out * h * w, layer))
        elif isinstance(layer, keras.layers.Conv2D):  # each output pixel gathers k*k*Cin
            k1, k2, c_in, c_out = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            found.append((2 * k1 * k2 * c_in * c_out * h * w, layer))
        elif isinstance(layer, keras.layers.Dense):
            found.append((2 * layer.kernel.shape[0] * layer.kernel.shape[1], layer))
    return found


def flops_per_image(generator, discriminator):
    """One D update and one G update. A layer's backward pass costs its forward twice (the
    gradient of its input and of its weights), except where a gradient is not needed: the
    first layer's input gradient (of images or z), and D's weight gradients in the G update.

    D update: G forward, D forward and backward on the real and on the fake batch.
    G update: D forward, D input gradients, G backward (G's forward is the D update's).
    """
    g, d = layer_flops(generator), layer_flops(discriminator)
    g_forward, d_forward = sum(f for f, _ in g), sum(f for f, _ in d)
    g_first, d_first = g[0][0], d[0][0]
    d_update = g_forward + 2 * d_forward + 2 * (2 * d_forward - d_first)
    g_update = d_forward + d_forward + (2 * g_forward - g_first)
    return d_update + g_update


def train_window(kernel_size, jit_compile=False):
    """The step as train.py runs it by default on a CPU; jit_compile=True: with XLA.
    Returns (window, solver)."""
    solver = Solver(*celeba_models(kernel_size), g_steps=1, jit_compile=jit_compile)
    real = tf.random.uniform((FLAGS.batch_size, 64, 64, 3), -1.0, 1.0)
    return timed(lambda: solver.train_step(real)["g_loss"].numpy(), FLAGS.batch_size), solver


def torch_windows():
    """Window functions for bench_torch.py's step (4x4 and 5x5), served by a process of its own
    (its thread pool and TensorFlow's do not meet); None without PyTorch."""
    try:
        import torch  # noqa: F401, only to know whether it is there
    except ImportError:
        return None
    server = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_torch.py"),
         "--serve", f"--batch_size={FLAGS.batch_size}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"

    def measure(kernel_size, seconds):
        server.stdin.write(f"{kernel_size} {seconds}\n")
        server.stdin.flush()
        return float(server.stdout.readline())

    return server, {k: (lambda seconds, k=k: measure(k, seconds)) for k in (4, 5)}  # (process, windows)


def peak_flops():
    """The faster of NumPy's (OpenBLAS) and TensorFlow's float32 4096^3 matrix product."""
    n = 4096
    a = np.random.default_rng(0).standard_normal((n, n), np.float32)
    t = tf.constant(a)
    rates = interleaved({"numpy": timed(lambda: a @ a, 1, warmup=1),
                         "tensorflow": timed(lambda: tf.linalg.matmul(t, t).numpy(), 1, warmup=1)})
    rates = {name: rate * 2 * n ** 3 for name, rate in rates.items()}
    return max(rates.values()), rates


def pipeline_rate():
    """data.load("celeba") on prepro.py's output of 1,000 generated CelebA-shaped photos."""
    import bench_data
    import prepro
    with tempfile.TemporaryDirectory() as tmp:
        source, out = os.path.join(tmp, "img_align_celeba"), os.path.join(tmp, "celeba")
        photos = bench_data.celeba_like(1000, bench_data.source_photos(), np.random.default_rng(0))
        bench_data.write_inputs(photos, source)
        prepro.build(source, out, out=lambda *_: None)
        batches = data.load("celeba", FLAGS.batch_size, 64, out).batches
        return bench_data.rate(batches, FLAGS.window_seconds)


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # the solvers share one traced train_step: retracing is expected
    results = {"device": tf.config.list_physical_devices("GPU") and "GPU" or
               f"CPU, {os.cpu_count()} cores", "batch_size": FLAGS.batch_size}
    windows, solvers = {}, {}
    served = torch_windows()
    for k, suffix in [(5, ""), (4, "_k4")]:
        windows["train_img_per_s" + suffix], solvers[k] = train_window(k)
        if FLAGS.levers:
            windows[f"train_img_per_s{suffix}_xla"], _ = train_window(k, jit_compile=True)
        if served:
            windows["torch_img_per_s" + suffix] = served[1][k]
        results["flops_per_img" + suffix] = flops_per_image(solvers[k].generator,
                                                            solvers[k].discriminator)
    z = solvers[5].sample_z(FLAGS.batch_size, 0)
    sample = tf.function(solvers[5].generator.sample)
    windows["sample_img_per_s"] = timed(lambda: sample(z).numpy(), FLAGS.batch_size)
    results.update(interleaved(windows))
    if served:
        served[0].stdin.close()
        served[0].wait()
    results["peak_flops"], results["peak_flops_by_library"] = peak_flops()
    results["pipeline_img_per_s"] = pipeline_rate()
    rows = []
    for k, suffix in [(5, ""), (4, "_k4")]:
        ours = results["train_img_per_s" + suffix]
        results["roofline_frac" + suffix] = ours * results["flops_per_img" + suffix] / results["peak_flops"]
        torch_ = results.get("torch_img_per_s" + suffix)
        results["vs_torch" + suffix] = torch_ and ours / torch_
        rows += [(f"train step, {k}x{k} kernels", ours,
                  f"{results['flops_per_img' + suffix] / 1e9:.2f} GFLOP/img, "
                  f"{100 * results['roofline_frac' + suffix]:.0f}% of peak")]
        if FLAGS.levers:
            xla = results[f"train_img_per_s{suffix}_xla"]
            rows += [(f"  same, with XLA", xla, f"XLA: x{xla / ours:.2f}")]
        rows += [(f"  same, PyTorch", torch_,
                  f"ours / PyTorch: {results['vs_torch' + suffix]:.2f}" if torch_ else "not installed")]
    rows += [("sampler (inference mode)", results["sample_img_per_s"], ""),
             ("input pipeline (TFRecords)", results["pipeline_img_per_s"], ""),
             ("float32 matmul peak, GFLOP/s", results["peak_flops"] / 1e9,
              ", ".join(f"{k} {v / 1e9:.0f}" for k, v in results["peak_flops_by_library"].items()))]
    print(f"batch {FLAGS.batch_size}, {results['device']}; images/s unless said")
    for name, value, note in rows:
        print(f"{name:34s} {'-' if value is None else f'{value:10.1f}':>10s}   {note}")
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
