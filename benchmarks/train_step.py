"""The train step of the 64x64 CelebA model and its ceiling, as window functions for
timing.interleaved(): the step as train.py runs it (and with XLA), the same step in PyTorch, and
the float32 matrix product that sets the machine's peak; and the step's FLOPs, counted from the
model's layers."""
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from benchmarks.timing import timed
from model import Architecture, Discriminator, Generator
from solver import Solver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATMUL_SIZE = 4096


def celeba_models(kernel_size, spectral_norm=False):
    keras.utils.set_random_seed(0)
    arch = Architecture(64, 3, kernel_size=kernel_size, spectral_norm=spectral_norm)
    return Generator(arch), Discriminator(arch)


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


def step_window(kernel_size, batch_size, jit_compile=False, spectral_norm=False, **options):
    """The step as train.py runs it by default on a CPU (jit_compile=True: with XLA), one D and
    one G update, input already in memory; options: the Solver's, such as a policy of
    augmentations. Returns (window function, solver)."""
    solver = Solver(*celeba_models(kernel_size, spectral_norm), g_steps=1,
                    jit_compile=jit_compile, **options)
    real = tf.random.uniform((batch_size, 64, 64, 3), -1.0, 1.0)
    return timed(lambda: solver.train_step(real)["g_loss"].numpy(), batch_size), solver


def torch_windows(batch_size):
    """(server process, {kernel size: window function}) for torch_reference.py's step, served by
    a process of its own (its thread pool and TensorFlow's do not meet); None without PyTorch."""
    try:
        import torch  # noqa: F401, only to know whether it is there
    except ImportError:
        return None
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.torch_reference", "--serve",
         f"--batch_size={batch_size}"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    assert server.stdout.readline().strip() == "ready"

    def measure(kernel_size, seconds):
        server.stdin.write(f"{kernel_size} {seconds}\n")
        server.stdin.flush()
        return float(server.stdout.readline())

    return server, {k: (lambda seconds, k=k: measure(k, seconds)) for k in (4, 5)}


def matmul_windows():
    """{library: window function} of the float32 4096^3 matrix product, in FLOP/s, by NumPy
    (OpenBLAS) and by TensorFlow; the faster sets the peak."""
    a = np.random.default_rng(0).standard_normal((MATMUL_SIZE, MATMUL_SIZE), np.float32)
    t = tf.constant(a)
    flops = 2 * MATMUL_SIZE ** 3
    return {"numpy": timed(lambda: a @ a, flops, warmup=1),
            "tensorflow": timed(lambda: tf.linalg.matmul(t, t).numpy(), flops, warmup=1)}
