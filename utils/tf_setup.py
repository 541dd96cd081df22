"""TensorFlow's environment, set before TensorFlow loads: import this module before anything
that imports TensorFlow.

oneDNN's CPU kernels: TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16 or
AMX, and they make the train step faster on AVX2 CPUs too (PERF.md). TF_ENABLE_ONEDNN_OPTS=0
turns them off.
"""
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow: errors only, no info or warnings
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def import_tensorflow_quietly():
    """With oneDNN on, TensorFlow writes a notice to stderr while it loads, before any log
    setting applies. Loading it with stderr pointed at /dev/null keeps a command's stderr to the
    one line that says what went wrong; a failed import still raises its Python error."""
    stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401 (loaded once; later imports find it loaded)
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)
        os.close(devnull)


import_tensorflow_quietly()
# Its Python side too: on a full disk, say, AutoGraph cannot write its generated code to a
# temporary file and warns (for TensorFlow's developers) before the command's own line.
logging.getLogger("tensorflow").setLevel(logging.ERROR)
