"""What every command (train.py, sample.py, export.py, evaluate.py, classifier.py, bench.py) does
around its work: TensorFlow's environment, set before TensorFlow loads (so import this first),
absl flags, and a mistake the user can fix reported as one line, not a stack trace."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow: errors only, no info or warnings
# oneDNN's CPU kernels: TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16 or
# AMX; on the project's AVX2 machine they made the train step x1.12 (5x5) and x1.37 (4x4) faster
# (PERF.md). TF_ENABLE_ONEDNN_OPTS=0 turns them off.
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

from absl import app, flags, logging  # noqa: E402 (after TensorFlow's environment is set)

import config  # noqa: E402


def main(run):
    """Parse the flags and call run(). A flag error or a config.ConfigError ends the program
    with one line "SCRIPT: error: ..." and exit status 1; Ctrl-C with status 130."""
    script = os.path.basename(sys.argv[0])

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:  # absl's own message takes two lines and says FATAL
            sys.exit(f"{script}: error: {e}: see python {script} --helpshort")

    def checked_run(argv):
        logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint chatter
        if len(argv) > 1:
            sys.exit(f"{script}: error: unexpected arguments {argv[1:]}: flags take the form "
                     "--name=value")
        try:
            run()
        except config.ConfigError as e:
            sys.exit(f"{script}: error: {e}")
        except KeyboardInterrupt:
            sys.exit(130)

    app.run(checked_run, flags_parser=parse_flags)
