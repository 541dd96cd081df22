"""The reference for bench.py: the same DCGAN step in PyTorch, as pytorch/examples writes it.

Same architecture as model.py at 64x64 (linear projection to 4x4x512, stride-2 (transposed)
convolutions with biases, batch norm, ReLU / LeakyReLU(0.2), one logit), same batch, one D and
one G update per step, float32 on the CPU. As in pytorch/examples, the G update reuses the D
update's fake batch (so does the project's step, which also moves G's batch norm statistics a
second time, as the original's second G forward pass does).

    pip install torch==2.13.0 && python bench_torch.py --kernel_size 5
"""
import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn


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


def window(step, batch, seconds):
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernel_size", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window_seconds", type=float, default=6.0)
    parser.add_argument("--serve", action="store_true",
                        help="time one window per line read from stdin (bench.py interleaves them "
                             "with its own), printing its images/s")
    a = parser.parse_args()
    steps = {k: make_step(k, a.batch_size) for k in ((4, 5) if a.serve else (a.kernel_size,))}
    if a.serve:
        print("ready", flush=True)
        for line in sys.stdin:  # "KERNEL_SIZE SECONDS"
            k, seconds = line.split()
            print(window(steps[int(k)], a.batch_size, float(seconds)), flush=True)
    else:
        rates = [window(steps[a.kernel_size], a.batch_size, a.window_seconds)
                 for _ in range(a.windows)]
        print(json.dumps({"img_per_s": statistics.median(rates), "torch": torch.__version__}))
