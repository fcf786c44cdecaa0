"""Atomic file output: write to a temporary name in the same folder, then rename into place.

A killed run therefore never leaves a file under its final name that looks complete. The
temporary name is hidden, `.<name>.<8 hex digits>.tmp`; what a killed run left under it is
removed by the next writer of that output once it holds the output's lock
(`exclusive_output`), never by a writer of another output.
"""
import contextlib
import glob
import json
import logging
import os
import secrets

from data.locks import output_lock

log = logging.getLogger(__name__)


def _new_temp_file(folder, name):
    """Create an empty `.<name>.<random>.tmp` in `folder`, with the permissions `open()` would give.

    (`tempfile.mkstemp` creates files readable by their owner only, which the renamed output
    would keep.)"""
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def temp_files(path):
    """The temporary files of `path` (by `atomic_path`) present beside it."""
    folder, name = os.path.split(os.path.abspath(path))
    return _temp_files_of(folder, glob.escape(name))


def temp_files_in(folder):
    """The temporary files (by `atomic_path`) of any file in `folder`."""
    return _temp_files_of(folder, "*")


def _temp_files_of(folder, name_pattern):
    return glob.glob(os.path.join(glob.escape(folder), f".{name_pattern}.{'[0-9a-f]' * 8}.tmp"))


@contextlib.contextmanager
def exclusive_output(path, *companions, wait=False):
    """Hold the output lock of `path` for the `with` block (`data.locks.output_lock`, `wait` as
    there), after removing the temporary files a killed writer left of it and of its
    `companions` (files published with it as one unit, such as the `.idx` of a `.rec`), and
    inside it when it is a folder whose files are written atomically (a training run: a kill
    while saving a checkpoint leaves a `.states` file of hundreds of MB)."""
    with output_lock(path, wait=wait):
        leftovers = [t for p in (path, *companions) for t in temp_files(p)]
        for tmp in leftovers + (temp_files_in(path) if os.path.isdir(path) else []):
            log.info("removing %s, left by a killed run", tmp)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        yield


def build_once(path, load, build):
    """`load()` the cache file `path`, or else `build()` it (which writes it) in one process at a time.

    Processes that find the cache missing or stale at the same time (conversions of several
    outputs from one train.bson, started together) do not each build it: the first takes its
    lock and builds, the others wait for the lock, then `load()` what it built. `load`
    returns None when there is no usable cache. Where the folder cannot be written (no lock
    file), `build()` runs unlocked; it cannot cache either then."""
    value = load()
    if value is not None:
        return value
    with contextlib.ExitStack() as lock:
        try:
            lock.enter_context(exclusive_output(path, wait=True))
        except OSError as error:
            log.warning("cannot lock %s (%s): building it without a cache", path, error)
        else:
            value = load()
            if value is not None:
                return value
        return build()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error remove it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _new_temp_file(folder, os.path.basename(path))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """`open()` for writing that only publishes the file under `path` once it is complete."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_json(path, obj):
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
