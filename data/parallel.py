"""Ordered parallel map over forked worker processes that share the parent's read-only state.

The data stages hand workers large read-only tables (a BSON offset index, permutations,
masks). Forking shares them copy-on-write instead of pickling them into every task; a task
is then just a small tuple, and each worker opens its own file descriptors
(`BsonIndex` reopens its file per process).

The workers are a `concurrent.futures.ProcessPoolExecutor`, not a `multiprocessing.Pool`:
when a task fails while others run, `Pool` terminates its workers and can deadlock on a
queue lock a killed worker held, and a worker that dies (killed, out of memory) leaves
`Pool` waiting forever; the executor lets running tasks finish and reports a dead worker
as `BrokenProcessPool`.
"""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

_current = None    # (func, state) of the running map, inherited by the forked workers


def _run(task):
    func, state = _current
    return func(state, task)


def ordered_map(func, state, tasks, workers):
    """Yield `func(state, task)` for every task, in task order, computed by `workers` processes.

    With one worker (or at most one task) everything runs in this process. Results are
    yielded as soon as they and all earlier ones are done, so the caller can consume them
    (e.g. append part files) while later tasks still run. Closing the generator early or an
    exception in a task cancels the tasks not started and waits for the running ones; a
    worker that dies raises `concurrent.futures.process.BrokenProcessPool`."""
    global _current
    if _current is not None:
        raise RuntimeError("ordered_map calls cannot be nested")
    tasks = list(tasks)
    _current = (func, state)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                yield func(state, task)
        else:
            with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("fork")) as pool:
                futures = [pool.submit(_run, task) for task in tasks]
                try:
                    for future in futures:
                        yield future.result()
                finally:
                    for future in futures:
                        future.cancel()
    finally:
        _current = None
