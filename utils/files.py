"""Writing files: each is written under a temporary name beside its final one, flushed to disk,
and renamed (a rename within a folder is atomic), so a reader finds the old file or the new one,
never half of one, and a crash leaves at most NAME.tmp behind. A write that fails (a full disk, a
file size limit, a folder made read-only) is one WriteError, which every command prints as one
line, with its temporary gone. Text, JSON, NumPy arrays, PNG and GIF images, the grid of images
they show, and a folder checked for writing before the work. TensorFlow-free, so that prepro.py's
worker processes can import it."""
import contextlib
import json
import math
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

import config

TMP = ".tmp"  # a file being written is NAME.tmp until it is whole
ADVICE = "make room (or make it writable again) and run the same command"


class WriteError(config.ConfigError):
    """A write that failed: what (a file, or what a command was writing), and why."""

    def __init__(self, what, reason, advice=ADVICE):
        super().__init__(f"cannot write {what} ({reason}): {advice}")
        self.what, self.reason = what, reason


def failure(error):
    """Why a write failed, in a few words, if error is a failed write: an OSError, or the error
    TensorFlow raises for one (its OpError, known here by its error_code, so that this module
    needs no TensorFlow). None for any other error."""
    if isinstance(error, WriteError):
        return error.reason
    if isinstance(error, OSError):  # by its number: h5py, say, puts a page of detail in strerror
        return os.strerror(error.errno) if error.errno else error.strerror or str(error)
    if type(error).__module__.startswith("tensorflow") and hasattr(error, "error_code"):
        return str(error).rsplit("; ", 1)[-1].split(" [Op:")[0]  # "...FILE.tmp; File too large"
    return None


@contextlib.contextmanager
def writing(what, advice=ADVICE):
    """A write that fails in the block, as one WriteError that names what was being written."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 (failure() tells a failed write from anything else)
        reason = failure(e)
        if reason is None:
            raise
        raise WriteError(what, reason, advice) from None


@contextlib.contextmanager
def replacing(path, suffix=""):
    """Yields the temporary name to write path under: path + ".tmp" + suffix (Keras, say, saves
    only to names ending in .keras). Once the block ends, the file (or folder) written there
    goes to disk and takes path's name. A write that fails leaves path as it was, removes the
    temporary, and raises WriteError; any other error leaves the temporary for the caller."""
    tmp = path + TMP + suffix
    try:
        with writing(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            yield tmp
            sync(tmp)
            os.replace(tmp, path)
            sync(os.path.dirname(path) or ".")
    except WriteError:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


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
