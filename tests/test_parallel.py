"""data.parallel.ordered_map with real forked workers: order, shared state, failures."""
import os
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from data.parallel import ordered_map


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
    with pytest.raises(BrokenProcessPool):
        list(ordered_map(die_on_two, None, range(6), workers=2))
    assert time.time() - start < 30


def test_an_early_close_stops_the_map_and_allows_the_next():
    results = ordered_map(square_after, {"delay": 0.0}, range(50), workers=2)
    assert next(results)[0] == 0
    results.close()
    assert [r[0] for r in ordered_map(square_after, {"delay": 0.0}, range(4), workers=2)] == [0, 1, 4, 9]
