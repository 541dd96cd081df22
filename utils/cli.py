"""What every command does around its work, and how it talks to the user: it defines its absl
flags, parses them, reports a mistake the user can fix as one line "COMMAND: error: ..." with
exit status 1, not a stack trace, and says how long things take. TensorFlow-free, so that
prepro.py's worker processes can import it."""
import os
import sys

from absl import app, flags, logging

import config


def main(run, define_flags, flag_names=None):
    """Define the flags, parse them and call run(). A flag error or a config.ConfigError ends
    the program with one line and exit status 1; Ctrl-C with status 130.

    A ConfigError about a setting is printed after the name of the command's flag for it: the
    setting's own name, or what flag_names maps it to ({"features": "eval_features"}).

    Flags are defined here, when the command runs, not when its module is imported: the tests
    import several commands into one process, and absl allows each flag name once."""
    define_flags()
    spec = sys.modules["__main__"].__spec__  # set when run as python -m PACKAGE.MODULE
    name = spec.name if spec else os.path.basename(sys.argv[0])
    command = f"python -m {name}" if spec else f"python {name}"

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:  # absl's own message takes two lines and says FATAL
            sys.exit(f"{name}: error: {e}: see {command} --helpshort")

    def checked_run(argv):
        logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint chatter
        if len(argv) > 1:
            sys.exit(f"{name}: error: unexpected arguments {argv[1:]}: flags take the form "
                     "--name=value")
        try:
            run()
        except config.ConfigError as e:
            flag = (flag_names or {}).get(e.setting, e.setting)
            sys.exit(f"{name}: error: " + (f"--{flag}: {e.message}" if flag else e.message))
        except KeyboardInterrupt:
            sys.exit(130)

    app.run(checked_run, flags_parser=parse_flags)


def format_duration(seconds):
    """42s, 4m02s, 1h05m."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
