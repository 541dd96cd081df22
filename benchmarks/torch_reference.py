"""The reference for bench.py: the same DCGAN step in PyTorch, as pytorch/examples writes it.

Same architecture as model.py at 64x64 (linear projection to 4x4x512, stride-2 (transposed)
convolutions with biases, batch norm, ReLU / LeakyReLU(0.2), one logit), same batch, one D and
one G update per step, float32 on the CPU. As in pytorch/examples, the G update reuses the D
update's fake batch (so does the project's step, which also moves G's batch norm statistics a
second time, as the original's second G forward pass does).

    pip install torch==2.13.0 && python -m benchmarks.torch_reference --kernel_size 5
"""
import json
import statistics
import sys

import torch
from absl import flags
from torch import nn

from benchmarks.timing import window
from utils import cli

FLAGS = flags.FLAGS


def networks(k):
    pad, out_pad = (k - 1) // 2, k % 2  # SAME-sized stride-2 layers for k = 4 and 5
    up = lambda c_in, c_out: nn.ConvTranspose2d(c_in, c_out, k, 2, pad, out_pad)
    down = lambda c_in, c_out: nn.Conv2d(c_in, c_out, k, 2, pad)
    generator = nn.Sequential(
        nn.Linear(100, 4 * 4 * 512), nn.Unflatten(1, (512, 4, 4)), nn.BatchNorm2d(512), nn.ReLU(),
        up(512, 256), nn.BatchNorm2d(256), nn.ReLU(), up(256, 128), nn.BatchNorm2d(128), nn.ReLU(),
        up(128, 64), nn.BatchNorm2d(64), nn.ReLU(), up(64, 3), nn.Tanh())
    discriminator = nn.Sequential(
        down(3, 64), nn.LeakyReLU(0.2), down(64, 128), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        down(128, 256), nn.BatchNorm2d(256), nn.LeakyReLU(0.2), down(256, 512),
        nn.BatchNorm2d(512), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 4 * 512, 1))
    return generator, discriminator


def make_step(kernel_size, batch):
    torch.manual_seed(0)
    generator, discriminator = networks(kernel_size)
    d_opt = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    g_opt = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    real = torch.rand(batch, 3, 64, 64) * 2 - 1
    ones, zeros = torch.ones(batch), torch.zeros(batch)

    def step():
        discriminator.zero_grad()
        fake = generator(torch.rand(batch, 100) * 2 - 1)
        d_loss = bce(discriminator(real)[:, 0], ones) + bce(discriminator(fake.detach())[:, 0], zeros)
        d_loss.backward()
        d_opt.step()
        generator.zero_grad()
        g_loss = bce(discriminator(fake)[:, 0], ones)
        g_loss.backward()
        g_opt.step()

    for _ in range(2):  # warm-up
        step()
    return step


def run():
    kernel_sizes = (4, 5) if FLAGS.serve else (FLAGS.kernel_size,)
    steps = {k: make_step(k, FLAGS.batch_size) for k in kernel_sizes}
    if FLAGS.serve:
        print("ready", flush=True)
        for line in sys.stdin:  # "KERNEL_SIZE SECONDS"
            k, seconds = line.split()
            print(window(steps[int(k)], FLAGS.batch_size, float(seconds)), flush=True)
    else:
        rates = [window(steps[FLAGS.kernel_size], FLAGS.batch_size, FLAGS.window_seconds)
                 for _ in range(FLAGS.windows)]
        print(json.dumps({"img_per_s": statistics.median(rates), "torch": torch.__version__}))


def define_flags():
    flags.DEFINE_integer("kernel_size", 5, "4 or 5")
    flags.DEFINE_integer("batch_size", 64, "images per step")
    flags.DEFINE_integer("windows", 5, "timed windows (the median is reported)")
    flags.DEFINE_float("window_seconds", 6.0, "length of each timed window")
    flags.DEFINE_bool("serve", False, "time one window per line read from stdin (bench.py "
                      "interleaves them with its own), printing its images/s")


if __name__ == "__main__":
    cli.main(run, define_flags)
