"""The command-line convention every tool of the project follows (framework-free).

* A user error ends the command with one line on stderr, `PROG: error: MESSAGE`, naming
  the file (and offset, product or process where known), and exit status 2; the traceback
  only with `--debug`. Open progress bars are closed first, so the line is not broken.
* Ctrl-C ends it with `PROG: interrupted` and status 130, without a traceback: every
  output is written atomically, so re-running the command resumes.
* Options shared by the tools come from one place: `add_common_options` (`--debug`,
  `--no-progress`) and `positive_int` for counts such as `--workers`.

This module lives in `data/` because `data/` is the bottom, framework-free layer that
every other package may import.
"""
import argparse
import functools
import sys
import traceback

from data.errors import DataInputError
from data.locks import OutputLockedError


class UserError(Exception):
    """An error the user can fix (bad option, missing file): reported as one line."""


# What counts as the user's doing; anything else is a bug and its message says so.
USER_ERRORS = (UserError, DataInputError, OutputLockedError, OSError, ValueError, KeyError, EOFError)


def positive_int(text):
    """argparse type: an integer ≥ 1 (worker counts, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_common_options(parser):
    """`--debug` (tracebacks) and `--no-progress` (no progress bars), on every tool."""
    group = parser.add_argument_group("output")
    group.add_argument("--debug", action="store_true", help="show the traceback of an error")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return group


def _close_progress_bars():
    tqdm = sys.modules.get("tqdm")
    if tqdm is None:
        return
    for bar in list(getattr(tqdm.tqdm, "_instances", ())):
        if not hasattr(bar, "disable"):   # Ctrl-C inside its constructor: never shown, and
            bar.disable = True            # close() (also tqdm's __del__) would fail on it
        bar.close()


def describe(error):
    """The one-line message of `error`: its own text for user errors, type and text otherwise."""
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    else:
        text = str(error) or type(error).__name__
    if isinstance(error, USER_ERRORS):
        return text
    return f"internal error: {type(error).__name__}: {text} (re-run with --debug for the traceback)"


def report_error(prog, error, debug=False):
    """Print `PROG: error: MESSAGE` (after the traceback with `debug`)."""
    _close_progress_bars()
    if debug:
        traceback.print_exception(error)
    print(f"{prog}: error: {describe(error)}", file=sys.stderr, flush=True)


def command(prog):
    """Decorator for a tool's `main(argv=None)`: the error and interrupt convention above.

    `--debug` is read from the raw arguments, so that it also covers errors raised while
    the arguments are checked."""
    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            args = sys.argv[1:] if argv is None else list(argv)
            try:
                return main(argv)
            except KeyboardInterrupt:
                _close_progress_bars()
                print(f"{prog}: interrupted", file=sys.stderr, flush=True)
                raise SystemExit(130) from None
            except Exception as error:
                report_error(prog, error, debug="--debug" in args)
                raise SystemExit(2) from None
        return run
    return wrap
