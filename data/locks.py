"""Exclusive locks on named outputs: one writer per output, a second one fails at once.

Two runs writing the same output (two `bson2rec --out A_train.rec`, two trainings into one
run folder) would otherwise share temporary files and could publish a mix of both. Every
tool that writes a named output holds `output_lock(path)` for the whole run.

The lock is `flock(2)` on a hidden file beside the output, `.<name>.lock`, which records
the holder's pid and host. The kernel releases a `flock` when its holder dies (SIGKILL, out
of memory), so a lock left by a dead process is simply taken over by the next run; the
file itself may stay behind and means nothing then. Forked children (conversion workers)
close their inherited copy at once (`os.register_at_fork`), so a lock never outlives the
process that took it, even if its workers did. `flock` is not reliable on every network
file system; on one, run one writer per output yourself.
"""
import contextlib
import fcntl
import logging
import os
import socket

log = logging.getLogger(__name__)

_held = {}    # lock path -> fd of the locks this process holds


class OutputLockedError(RuntimeError):
    """The output is being written by another process (named by pid and host)."""

    def __init__(self, output, pid, host):
        self.output, self.pid, self.host = output, pid, host
        super().__init__(f"{output} is being written by pid {pid} (host {host})")


def lock_path(output):
    """The lock file of `output` (a file or a folder; a trailing slash is ignored)."""
    output = os.path.abspath(output)
    folder, name = os.path.split(output)
    return os.path.join(folder, f".{name}.lock")


def _holder(fd):
    """(pid, host) written by the process holding the lock, or ('?', '?') if not readable yet."""
    text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    return (text[0], text[1]) if len(text) >= 2 else ("?", "?")


def _acquire(path, output, wait):
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as error:      # a read-only folder: say which output cannot be written
            raise OSError(error.errno, f"cannot write {output}: {error.strerror}", path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, host = _holder(fd)
            if not wait:
                os.close(fd)
                raise OutputLockedError(output, pid, host) from None
            log.info("%s is being written by pid %s (host %s): waiting for it", output, pid, host)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        # The holder before us may have removed the file between our open and flock: then
        # we locked an orphaned inode, and must lock the file now at `path` instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(output, wait=False):
    """Hold the exclusive lock of `output` for the `with` block; `OutputLockedError` if taken,
    or with `wait` wait until its holder is done (for a shared cache that one process builds
    and the others then read).

    Re-entrant within a process (a tool that locks an output and calls a function that
    locks it again)."""
    path = lock_path(output)
    if path in _held:
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = _acquire(path, output.rstrip("/") or output, wait)
    _held[path] = fd
    try:
        yield
    finally:
        del _held[path]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _close_inherited():
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_inherited)
