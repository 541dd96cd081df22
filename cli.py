"""What every command (train.py, sample.py, export.py, evaluate.py, classifier.py) does around its
work: absl flags, and a mistake the user can fix reported as one line, not a stack trace."""
import os
import sys

from absl import app, flags, logging

import config


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
