"""Atomic file output: write to a temporary name in the same folder, then rename into place.

A killed run therefore never leaves a file under its final name that looks complete.
"""
import contextlib
import json
import os
import secrets


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
