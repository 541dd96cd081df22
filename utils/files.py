"""Writing files: each is written under a temporary name beside its final one, flushed to disk,
and renamed (a rename within a folder is atomic), so a reader finds the old file or the new one,
never half of one, and a crash leaves at most NAME.tmp behind. Text, JSON, NumPy arrays, PNG
and GIF images, the grid of images they show, and a folder checked for writing before the work.
TensorFlow-free, so that prepro.py's worker processes can import it."""
import contextlib
import json
import math
import os
import tempfile

import numpy as np
from PIL import Image

import config

TMP = ".tmp"  # a file being written is NAME.tmp until it is whole


@contextlib.contextmanager
def replacing(path, suffix=""):
    """Yields the temporary name to write path under: path + ".tmp" + suffix (Keras, say, saves
    only to names ending in .keras). Once the block ends, the file (or folder) written there
    goes to disk and takes path's name. On an error the temporary is left for the caller."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = path + TMP + suffix
    yield tmp
    sync(tmp)
    os.replace(tmp, path)
    sync(folder)


def sync(path):
    """fsync a file, or a folder: for a folder, that makes the renames in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(path, advice, setting=None):
    """Create the folder (and its parents) and check that a file can be written in it, or stop
    with one line that says why not, and the advice (about the setting that named the folder)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # nameless: several processes may probe at once
            pass
    except OSError as e:
        raise config.ConfigError(f"cannot write {path} ({e.strerror}): {advice}",
                                 setting) from None


def write_text(path, text):
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path, values):
    write_text(path, json.dumps(values, indent=2, sort_keys=True) + "\n")


def write_npy(path, array):
    with replacing(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def to_image(pixels):
    """uint8 [H, W, C] -> a PIL image (grayscale when C is 1)."""
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def write_png(path, pixels):
    with replacing(path) as tmp:
        to_image(pixels).save(tmp, format="PNG")


def write_gif(path, frames, ms_per_frame=120):
    """An animated GIF that loops."""
    images = [to_image(f) for f in frames]
    with replacing(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=ms_per_frame, loop=0)


def image_grid(pixels, cols=None):
    """uint8 [N, H, W, C] -> one uint8 image, rows of cols images (default: a near-square grid),
    the last row padded with black."""
    n, h, w, c = pixels.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pixels = np.concatenate([pixels, np.zeros((rows * cols - n, h, w, c), np.uint8)])
    return pixels.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
