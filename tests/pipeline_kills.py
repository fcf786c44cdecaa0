"""Killing a process of the ZeroMQ predictor in the middle of a run, for the tests of both
frameworks' model workers (framework-free: the MXNet and the PyTorch suites import it)."""
import multiprocessing
import os
import re
import signal
import threading
import time

import pytest

from predict.pipeline import PipelineError


def kill_when_running(role, sig, out_folder, delay=0.7):
    """Background thread: once the run's output folder exists (workers ready, decoders
    starting), send `sig` to the child named `role 0`; returns a dict with the kill time."""
    done = {}

    def run():
        deadline = time.time() + 60
        while time.time() < deadline:
            children = {p.name: p for p in multiprocessing.active_children()}
            if role + " 0" in children and any(n.startswith("decoder") for n in children) and \
                    any(".tmp-" in n for n in os.listdir(out_folder)):
                time.sleep(delay)
                os.kill(children[role + " 0"].pid, sig)
                done["pid"], done["time"] = children[role + " 0"].pid, time.time()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def assert_a_kill_ends_the_run_naming_it(role, predict, out):
    """`predict()` writes into the (empty) folder `out` while ``role 0`` is SIGKILLed in the
    middle: the run must fail within 5 s naming the process, with no child left alive and
    nothing half-written in `out`."""
    thread, killed = kill_when_running(role, signal.SIGKILL, str(out))
    with pytest.raises(PipelineError) as err:
        predict()
    failed_after = time.time() - killed["time"]
    thread.join()
    assert re.search(rf"{role} 0 \(pid {killed['pid']}\) died with exit code -9 \(SIGKILL\)", str(err.value))
    assert failed_after < 5
    assert not multiprocessing.active_children()
    assert os.listdir(out) == []
