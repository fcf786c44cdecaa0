"""Ordered parallel map over forked worker processes that share the parent's read-only state.

The data stages hand workers large read-only tables (a BSON offset index, permutations,
masks). Forking shares them copy-on-write instead of pickling them into every task; a task
is then just a small tuple, and each worker opens its own file descriptors
(`BsonIndex` reopens its file per process).
"""
import multiprocessing

_current = None    # (func, state) of the running map, inherited by the forked workers


def _run(task):
    func, state = _current
    return func(state, task)


def ordered_map(func, state, tasks, workers):
    """Yield `func(state, task)` for every task, in task order, computed by `workers` processes.

    With one worker (or at most one task) everything runs in this process. Results are
    yielded as soon as they and all earlier ones are done, so the caller can consume them
    (e.g. append part files) while later tasks still run. Closing the generator early or an
    exception in a task stops the workers."""
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
            with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
                yield from pool.imap(_run, tasks)
    finally:
        _current = None
