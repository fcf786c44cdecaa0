"""Ordered parallel map over forked worker processes that share the parent's read-only state.

The data stages hand workers large read-only tables (a BSON offset index, permutations,
masks). Forking shares them copy-on-write instead of pickling them into every task; a task
is then just a small tuple, and each worker opens its own file descriptors
(`BsonIndex` reopens its file per process).

The workers are plain forked processes, each with a pipe for its tasks and one for its
results, and no thread in the parent: nothing can block on a lock a dead worker held, so
every way out is bounded.

* The workers die with their parent: each asks the kernel for SIGKILL when the parent
  dies (Linux `prctl(PR_SET_PDEATHSIG)`), so that SIGKILL of the parent (the out-of-memory
  killer) leaves no orphan working on (strictly, with the thread that forked them: the one
  iterating the map). `multiprocessing.Pool` and `ProcessPoolExecutor` workers outlived a
  killed `bson2rec` forever.
* Ctrl-C is the parent's alone: the workers ignore SIGINT (a terminal sends it to the whole
  process group), and the parent, on any early exit (Ctrl-C, an error, the caller closing the
  map), kills its workers with SIGKILL instead of waiting for their tasks. The executors
  cannot do that: `ProcessPoolExecutor` waits for the running tasks and has no way to kill
  its workers before Python 3.14, and a Ctrl-C that reached its workers could leave one
  blocked on a queue lock and the parent in `waitpid` (~3 runs in 110 of `bson2rec`).
  Whatever a killed task had written is redone by the next run: the stages mark a unit of
  work done only once it is complete.
* A worker that dies (killed, out of memory) raises `WorkerDiedError` naming it.
"""
import ctypes
import os
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Pipe, wait

_current = None    # (func, state) of the running map, inherited by the forked workers
_PR_SET_PDEATHSIG = 1
_TASKS_IN_FLIGHT = 2    # per worker: the next task waits in its pipe while the caller consumes a result


class WorkerDiedError(ChildProcessError):
    """A worker process died before returning the result of its task."""


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker (the `__cause__` of the re-raised error)."""

    def __str__(self):
        return self.args[0]


def ordered_map(func, state, tasks, workers):
    """Yield `func(state, task)` for every task, in task order, computed by `workers` processes.

    With one worker (or at most one task) everything runs in this process. Results are
    yielded as soon as they and all earlier ones are done, so the caller can consume them
    (e.g. append part files) while later tasks still run. An error in a task is raised, with
    the worker's traceback as its cause, once the tasks before it are done (so it is the
    first error in task order); no task is started after it. Any early exit (an error, Ctrl-C
    in the parent, closing the generator) kills the workers at once."""
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
            yield from _map_in_workers(tasks, min(workers, len(tasks)))
    finally:
        _current = None


class _Worker:
    """A forked worker process and the parent's ends of its two pipes."""

    def __init__(self, pid, tasks, results):
        self.pid, self.tasks, self.results = pid, tasks, results
        self.numbers = []       # tasks sent and not answered yet, in order
        self.reaped = False

    @classmethod
    def start(cls, workers):
        """Fork a worker and append it to `workers`."""
        task_reader, tasks = Pipe(duplex=False)
        results, result_writer = Pipe(duplex=False)
        parent = os.getpid()
        # SIGINT stays blocked across the fork: the child ignores it before it can arrive, and
        # the parent has recorded the child (to kill it) before its KeyboardInterrupt is raised.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pid = os.fork()
            if pid == 0:
                _worker_main(parent, task_reader, result_writer, mask)
            workers.append(cls(pid, tasks, results))
            task_reader.close()
            result_writer.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def send(self, number, task):
        self.numbers.append(number)
        try:
            self.tasks.send((number, task))
        except BrokenPipeError:
            raise self._died() from None

    def receive(self):
        """(number, ok, result or (error, traceback text)) of the worker's next finished task."""
        try:
            number, ok, value = pickle.loads(self.results.recv_bytes())
        except EOFError:
            raise self._died() from None
        self.numbers.remove(number)
        return number, ok, value

    def _died(self):
        return WorkerDiedError(f"worker process {self.pid} died during task {self.numbers[0]} "
                               f"({self._exit_status()})")

    def _exit_status(self):
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        if not os.WIFSIGNALED(status):
            return f"exit status {os.WEXITSTATUS(status)}"
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}{': out of memory?' if number == signal.SIGKILL else ''}"

    def kill(self):
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.tasks.close()
        self.results.close()


def _map_in_workers(tasks, n_workers):
    workers = []
    try:
        for _ in range(n_workers):
            _Worker.start(workers)
        todo = iter(enumerate(tasks))
        outcomes, failed = {}, False
        for worker in workers * _TASKS_IN_FLIGHT:
            if (item := next(todo, None)) is not None:
                worker.send(*item)
        for number in range(len(tasks)):
            while number not in outcomes:
                busy = {w.results: w for w in workers if w.numbers}
                for ready in wait(list(busy)):
                    worker = busy[ready]
                    done, ok, value = worker.receive()
                    outcomes[done] = ok, value
                    failed |= not ok
                    if not failed and (item := next(todo, None)) is not None:
                        worker.send(*item)
            ok, value = outcomes.pop(number)
            if not ok:
                error, remote_traceback = value
                raise error from RemoteTraceback(remote_traceback)
            yield value
    finally:
        for worker in workers:
            worker.kill()


def _worker_main(parent, task_reader, result_writer, mask):
    """The body of a worker process: run tasks until killed; never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if not die_with_parent(parent):
            return
        func, state = _current
        while True:
            number, task = task_reader.recv()
            try:
                outcome = pickle.dumps((number, True, func(state, task)), pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                outcome = pickle.dumps((number, False, _portable(error)), pickle.HIGHEST_PROTOCOL)
            result_writer.send_bytes(outcome)
    finally:
        os._exit(1)


def _portable(error):
    """(error, its traceback's text) in a form that pickles: the error itself, or a RuntimeError
    with its text."""
    try:
        pickle.dumps(error)
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return error, traceback.format_exc()


def die_with_parent(parent, signal_number=signal.SIGKILL):
    """Have the kernel send this process `signal_number` when its parent dies (Linux's
    ``prctl(PR_SET_PDEATHSIG)``; strictly, when the thread of the parent that started it
    ends), so that a parent killed by SIGKILL (the out-of-memory killer, a user) leaves no
    orphan working on. Returns False when `parent`, the pid of the process that started this
    one, is not its parent any more: it died before the request could take effect (the
    caller then exits). Elsewhere than Linux it only says whether the parent is alive."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0)
    return os.getppid() == parent


def die_with_current_parent(signal_number=signal.SIGKILL):
    """`die_with_parent` for a process started by a library that does not tell it its parent's
    pid (torchrun's agent, a DataLoader, whichever way it starts its workers): its current
    parent, which must not be init (pid 1: the parent died before the request); returns
    False when it is."""
    parent = os.getppid()
    return parent != 1 and die_with_parent(parent, signal_number)


def dying_with_this_process(signal_number=signal.SIGKILL):
    """A ``preexec_fn`` for ``subprocess.Popen`` whose child gets `signal_number` when this
    process dies (`die_with_parent`; with SIGTERM a child such as torchrun's agent stops its
    own workers first), and exits at once if this process died before it could ask."""
    parent = os.getpid()

    def preexec():
        if not die_with_parent(parent, signal_number):
            os._exit(1)
    return preexec


def _libc_prctl():
    """libc's `prctl` on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()       # loaded at import, in the parent: nothing to load between a fork and an exec
