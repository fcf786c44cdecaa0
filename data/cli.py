"""The command-line convention every tool of the project follows (framework-free).

* A user error ends the command with one line on stderr, `PROG: error: MESSAGE`, naming
  the file (and offset, product or process where known), and exit status 2; the traceback
  only with `--debug`. Open progress bars are closed first, so the line is not broken.
* Ctrl-C ends it with `PROG: interrupted` and status 130, without a traceback: every
  output is written atomically, so re-running the command resumes.
* Options shared by the tools come from one place: `add_common_options` (`--debug`,
  `--no-progress`), `add_device_options` (`--devices cpu|gpu:0,gpu:1`, one spelling for
  training, prediction and the benchmarks; training's `--gpus 0,1` still works, with a
  note), `add_workers_option`, `add_skip_bad_option`, and `positive_int` for counts
  (`positive_float` for timeouts).
  An older spelling is accepted through `OldSpelling`, which says once what it means.
* One log format, `LOG_FORMAT`, set up by `setup_logging`: time, host, logger[pid],
  level. Host and pid tell apart the workers of a distributed training run and the
  processes of the predictor and converter; training logs (train.logs) have used it from
  the start, so old logs and the log reader (predict.logs) stay as they are.

This module lives in `data/` because `data/` is the bottom, framework-free layer that
every other package may import.
"""
import argparse
import functools
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import traceback

from data.devices import device_list, gpu_devices, gpu_numbers
from data.errors import DataInputError
from data.locks import OutputLockedError


INTERRUPTED = 130     # the exit status after Ctrl-C (128 + SIGINT, as a shell reports it)


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


def positive_float(text):
    """argparse type: a number > 0 (timeouts)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def devices_arg(text):
    """argparse type of `--devices`: `data.devices.device_list` with argparse's error."""
    try:
        return device_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class OldSpelling(argparse.Action):
    """An option's older spelling: `translate`s its value into the new option's text,
    prints `PROG: note: OLD VALUE means NEW TEXT` on stderr and stores what the new
    option's `type` makes of that text. Old command lines and scripts keep working, and
    their user learns the one spelling."""

    def __init__(self, option_strings, dest, new_option, translate=str, new_type=str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new_option, self.translate, self.new_type = new_option, translate, new_type

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            text = self.translate(values)
            value = self.new_type(text)
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise argparse.ArgumentError(self, str(error)) from None
        print(f"{parser.prog}: note: {option_string} {shlex.quote(values)} means {self.new_option} {text}",
              file=sys.stderr, flush=True)
        setattr(namespace, self.dest, value)


def add_common_options(parser):
    """`--debug` (tracebacks) and `--no-progress` (no progress bars), on every tool."""
    group = parser.add_argument_group("output")
    group.add_argument("--debug", action="store_true", help="show the traceback of an error")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return group


def add_device_options(parser, default="cpu", help_text="devices: cpu, or gpu:0,gpu:1,...", gpus_alias=False):
    """`--devices` (dest ``devices``: a tuple of device strings, `data.devices.device_list`);
    with `gpus_alias` also training's older `--gpus 0,1`, which means `--devices gpu:0,gpu:1`
    (empty: cpu). The group is returned for a tool's own device options."""
    group = parser.add_argument_group("devices")
    group.add_argument("--devices", type=devices_arg, default=default, help=help_text)
    if gpus_alias:
        group.add_argument("--gpus", dest="devices", action=OldSpelling, new_option="--devices",
                           translate=gpu_devices, new_type=devices_arg, default=argparse.SUPPRESS,
                           help="GPU numbers, e.g. 0,1: the older spelling of --devices gpu:0,gpu:1")
    return group


def gpu_numbers_of(parser, devices):
    """`--devices` as the GPU numbers ``"0,1"`` (``""``: the CPU) that training and its
    benchmarks take (``data.devices.gpu_numbers``); a mix of CPU and GPU is the parser's error."""
    try:
        return gpu_numbers(devices)
    except ValueError as error:
        parser.error(f"--devices: {error}")


def add_workers_option(parser, help_text="processes (default: all cores)"):
    """`--workers N` (≥ 1), all cores by default."""
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count(), help=help_text)


def add_skip_bad_option(parser, help_text="skip bad input and list it in the report"):
    """`--skip-bad`: go on past bad input (each tool says where it lists what it skipped)."""
    parser.add_argument("--skip-bad", action="store_true", help=help_text)


LOG_FORMAT = "%(asctime)s " + socket.gethostname() + " %(name)s[%(process)d] %(levelname)s %(message)s"


def setup_logging(level=logging.INFO):
    """The root logger of a tool's process at `level`, in `LOG_FORMAT`, on stderr."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def _close_progress_bars():
    tqdm = sys.modules.get("tqdm")
    if tqdm is None:
        return
    for bar in list(getattr(tqdm.tqdm, "_instances", ())):
        if not hasattr(bar, "disable"):   # Ctrl-C inside its constructor: never shown, and
            bar.disable = True            # close() (also tqdm's __del__) would fail on it
        bar.close()


def _ignore_unraisable(unraisable):
    """`sys.unraisablehook` for an interrupted command's exit."""


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


_interrupt_reported = threading.Event()


def _report_interrupted(prog):
    """Print ``PROG: interrupted`` once per process, whoever asks first."""
    if not _interrupt_reported.is_set():
        _interrupt_reported.set()
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)


def interrupt_within(prog, grace=1.0):
    """Make every Ctrl-C (SIGINT) end this process at the latest `grace` seconds after it.

    The handler raises ``KeyboardInterrupt`` as Python's own does, so the command unwinds as
    usual, and starts a timer. A ``KeyboardInterrupt`` raised while the interpreter runs a
    finaliser is printed as "Exception ignored" and lost, and the command goes on: this
    happened to a PyTorch training when the signal came while a finished epoch's DataLoader
    iterator joined its workers in its ``__del__`` (about 1 run in 2 of
    tests/torch/test_torch_faults.py's Ctrl-C test, the training going on to plot its curves).
    Should the process still run when the timer fires, it reports the interrupt and ends
    (status `INTERRUPTED`): every output is written atomically and its lock is released by
    the process's end, so nothing that looks complete is left half-written. From the signal
    on, what finalisers fail to do is not news (their "Exception ignored" tracebacks are
    not printed, as after the convention's own interrupt, `command`). Call it in the
    main thread of the process that does the work, not in one that waits for a child that
    has a grace time of its own (``train.train.run_phase``)."""
    def expire():
        _report_interrupted(prog)
        os._exit(INTERRUPTED)

    def handler(signum, frame):
        sys.unraisablehook = _ignore_unraisable
        timer = threading.Timer(grace, expire)
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


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
                # A Ctrl-C inside a progress bar's constructor can leave a half-built bar that
                # no registry holds; its __del__ fails at exit. Nothing after this line is news.
                sys.unraisablehook = _ignore_unraisable
                _report_interrupted(prog)
                raise SystemExit(INTERRUPTED) from None
            except Exception as error:
                report_error(prog, error, debug="--debug" in args)
                raise SystemExit(2) from None
        return run
    return wrap
