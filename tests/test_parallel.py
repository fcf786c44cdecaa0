"""data.parallel.ordered_map with real forked workers: order, shared state, failures, and
workers that never outlive their parent or a Ctrl-C."""
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from data.parallel import RemoteTraceback, WorkerDiedError, ordered_map
from helpers import still_running


def square_after(state, task):
    time.sleep(state["delay"] * (task % 3))     # later tasks may finish first
    return task * task, os.getpid()


def test_results_come_in_task_order_from_several_processes():
    results = list(ordered_map(square_after, {"delay": 0.01}, range(12), workers=2))
    assert [r[0] for r in results] == [t * t for t in range(12)]
    assert len({pid for _, pid in results} - {os.getpid()}) == 2


def fail_on_three(state, task):
    if task == 3:
        raise ValueError(f"task {task} is bad")
    time.sleep(0.05)
    return task


def test_a_failing_task_raises_its_error_while_others_run():
    """The error path that left multiprocessing.Pool deadlocked now and then, many times over."""
    for _ in range(20):
        with pytest.raises(ValueError, match="task 3 is bad"):
            list(ordered_map(fail_on_three, None, range(8), workers=2))


def die_on_two(state, task):
    if task == 2:
        os._exit(1)             # a worker killed mid-task (out of memory, SIGKILL)
    return task


def test_a_dead_worker_raises_instead_of_hanging():
    start = time.time()
    with pytest.raises(WorkerDiedError, match=r"worker process \d+ died during task 2 \(exit status 1\)"):
        list(ordered_map(die_on_two, None, range(6), workers=2))
    assert time.time() - start < 30


def killed_on_one(state, task):
    if task == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return task


def test_a_killed_worker_is_named_with_its_signal():
    with pytest.raises(WorkerDiedError, match=r"died during task 1 \(killed by SIGKILL: out of memory\?\)"):
        list(ordered_map(killed_on_one, None, range(4), workers=2))


def fail_late_and_early(state, task):
    if task == 1:
        time.sleep(0.3)
        raise KeyError("task 1 fails last")
    if task == 2:
        raise KeyError("task 2 fails first")
    return task


def test_the_first_error_in_task_order_is_raised_with_the_worker_traceback():
    with pytest.raises(KeyError, match="task 1 fails last") as error:
        list(ordered_map(fail_late_and_early, None, range(6), workers=2))
    assert isinstance(error.value.__cause__, RemoteTraceback)
    assert "fail_late_and_early" in str(error.value.__cause__)


def test_an_early_close_stops_the_map_and_allows_the_next():
    results = ordered_map(square_after, {"delay": 0.0}, range(50), workers=2)
    assert next(results)[0] == 0
    results.close()
    assert [r[0] for r in ordered_map(square_after, {"delay": 0.0}, range(4), workers=2)] == [0, 1, 4, 9]


SLOW_MAP = """
import sys, time
from data.parallel import ordered_map

def slow(state, task):
    time.sleep(60)
    return task

print("started", flush=True)
try:
    list(ordered_map(slow, None, range(4), workers=2))
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def _start_slow_map():
    """A process whose two workers are busy for a minute, and the workers' pids."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_MAP], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "started"
    deadline = time.time() + 10
    while len(children := psutil.Process(proc.pid).children()) < 2 and time.time() < deadline:
        time.sleep(0.02)
    assert len(children) == 2
    return proc, children


def test_workers_die_with_their_parent():
    """SIGKILL of the parent (what the out-of-memory killer does) leaves no worker behind."""
    proc, workers = _start_slow_map()
    proc.kill()
    proc.wait()
    alive = still_running(workers, timeout=5)
    assert not alive, f"orphaned workers: {alive}"


@pytest.mark.parametrize("to", ["group", "parent"])
def test_ctrl_c_returns_at_once_without_waiting_for_running_tasks(to):
    """SIGINT to the whole process group (a terminal's Ctrl-C) or to the parent alone: only the
    parent handles it, and it kills its workers instead of waiting a minute for their tasks."""
    proc, workers = _start_slow_map()
    start = time.time()
    (os.killpg if to == "group" else os.kill)(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=5)
    assert time.time() - start < 2 and out.strip() == "interrupted"
    assert not still_running(workers, timeout=1)
