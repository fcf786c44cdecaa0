"""Fine-tune a network on Cdiscount RecordIO data: ``python train/train.py --help``.

Runs as ``python train/train.py ...`` or ``python -m train.train ...``; the logic lives in
``train.fit`` (the loop) and ``train.args`` (the argument groups). With ``--recipe M06``
it runs a recipe of ``train.recipes`` instead: each phase as a ``train.py`` process of its own.
With ``--backend torch`` on several GPUs it starts itself again under ``torchrun``, one
process per GPU (`relaunch_command`).
"""
import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
import subprocess
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # `python train/train.py` puts train/ first on sys.path, where this very file would
    # shadow the `train` package: the checkout's root takes its place, so that the command
    # runs from a checkout without an install step.
    sys.path[0] = os.path.dirname(sys.path[0])

from data.cli import INTERRUPTED, UserError, command, interrupt_within  # noqa: E402
from data.parallel import dying_with_this_process  # noqa: E402
from data.record_file import DataFileError  # noqa: E402
from models.backends import get_backend  # noqa: E402
from models.runs import CheckpointError  # noqa: E402
from train import fit, recipes  # noqa: E402
from train.args import add_compute_args, parse_config  # noqa: E402
from train.backend import backend_class  # noqa: E402

# Errors with a message meant for the user: one line `train: error: ...`, no traceback
# (data.cli's convention also covers input errors, locks and OS errors); with the backend's.
USER_ERRORS = (DataFileError, CheckpointError, fit.NonFiniteLossError)


@command("train")
def _train(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    request = recipes.parse_request(argv)
    if request is not None:
        return _run_recipes(request)
    config = parse_config(argv)
    relaunch = relaunch_command(config, argv)
    if relaunch is not None:
        get_backend(config.compute.backend).module("relauncher").check_devices(config)
        print("train: one process per GPU: %s" % shlex.join(relaunch), file=sys.stderr, flush=True)
        return run_phase(relaunch)
    backend = backend_class(config.compute.backend)        # after the command line: --help loads no framework
    interrupt_within("train")
    try:
        fit.run(config)
    except USER_ERRORS + backend.user_errors as err:
        raise UserError(str(err)) from err
    except backend.framework_errors as err:
        raise RuntimeError(backend.describe_error(err)) from err
    return 0


def _run_recipes(request):
    """Run each phase of each recipe in turn; the status of the first that fails, else 0.

    Each phase is a process of its own, as the shell recipes ran them: it starts with free
    devices and, in a distributed job, with its own kvstore (MXNet cannot start a second one
    in a process)."""
    settings = request.settings
    if settings.gpus is None:
        backend = _backend_of(request.extra) or recipes.recipe_backend(request.recipes[0])
        settings = dataclasses.replace(settings, gpus=backend_class(backend).all_gpus())
        if not settings.gpus:
            print("train: no GPU found, training on the CPU (--devices gpu:0,gpu:1,... to choose)", file=sys.stderr, flush=True)
    for recipe in request.recipes:
        phases = recipes.phase_arguments(recipe, settings, request.extra)
        for number, argv in enumerate(phases, 1):
            command = [sys.executable, os.path.abspath(__file__), *argv]
            if request.dry_run:
                print(shlex.join(command), flush=True)
                continue
            print("train: %s, phase %d of %d: %s" % (recipe.name, number, len(phases), shlex.join(command)),
                  file=sys.stderr, flush=True)
            status = run_phase(command)
            if status:
                return status
    return 0


def _backend_of(argv):
    """The ``--backend`` of the options a recipe passes on, or None when they do not say."""
    parser = argparse.ArgumentParser(add_help=False)
    add_compute_args(parser)
    parser.set_defaults(backend=None)
    return parser.parse_known_args(argv)[0].backend


def relaunch_command(config, argv):
    """The command that runs `config` (given as `argv`) in several processes when its
    backend starts one per device (``models.backends``' ``relauncher``: torchrun for
    PyTorch on several GPUs) and this process is not one of them; else None."""
    backend = get_backend(config.compute.backend)
    if backend.relauncher is None:
        return None
    return backend.module("relauncher").relaunch(config, argv, os.path.abspath(__file__))


PHASE_GRACE = 10.0       # seconds a phase has to stop on its own after a Ctrl-C


def run_phase(command):
    """The exit status of `command`, a phase of a recipe or the torchrun of a run on several
    GPUs, run as a child that does not outlive this process: when this one dies, even by
    SIGKILL, the kernel sends the child SIGTERM (``data.parallel.dying_with_this_process``;
    torchrun's agent then stops its workers, which also die with it:
    ``train.torch_backend.backend.follow_agent``). A Ctrl-C from the terminal reaches the child
    too, which then stops on its own: it is left `PHASE_GRACE` seconds to finish (not killed in
    the middle of saving a checkpoint), and gets the SIGTERM after them."""
    with subprocess.Popen(command, preexec_fn=dying_with_this_process(signal.SIGTERM)) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(PHASE_GRACE)
            raise


def main(argv=None):
    """Train; returns the exit status (0), or exits with 2 after one line `train: error: ...`.

    An interrupted run (Ctrl-C: ``train: interrupted``, status 130) exits at once, without
    the interpreter's shutdown: every output is complete or a hidden temporary already (the
    error's way out has run every ``finally``: the run folder's lock is released), the log
    writes each line as it comes, and the children die with this process (DataLoader
    workers, torchrun); PyTorch's shutdown of its input workers took 1.6-4.6 s more.
    A failed worker of a distributed job must not wait in the parameter server's shutdown
    barrier for the other workers, which wait for its gradients: it exits at once too (the
    launcher then stops the job)."""
    try:
        return _train(argv)
    except SystemExit as done:
        if done.code != INTERRUPTED and os.environ.get("DMLC_ROLE") != "worker":
            raise
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(done.code if isinstance(done.code, int) else 2)


if __name__ == "__main__":
    sys.exit(main())
