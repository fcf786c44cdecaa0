"""Tables the data stages keep on disk: numpy arrays plus a JSON `meta` in one `.npz`.

Four files have this form: the BSON index cache, the per-image digests cache, the MD5
dictionary and the split file. Their `meta` says which format version wrote them and what they
were made from (`file_signature` of the source), so that a reader tells a stale or foreign file
from a good one. Two kinds of reader: a cache (`load_cached`) that is stale, of another version
or damaged is None, and is built again; an input the user named (`load_versioned`) that is
damaged or of another version is a `DataInputError` naming it. The files are plain arrays
(they load without pickle) written atomically (`data.atomic`), so a killed writer leaves none
that looks complete.
"""
import contextlib
import json
import logging
import os

import numpy as np

from data.atomic import atomic_path, build_once
from data.errors import NPZ_ERRORS, DataInputError, reading_npz

log = logging.getLogger(__name__)


def file_signature(path):
    """What identifies a version of a source file cheaply: its absolute path, size and mtime."""
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def same_file_version(signature, path):
    """Whether `path` has the size and mtime of a `file_signature` (wherever the file lies now)."""
    now = file_signature(path)
    return all(signature.get(k) == now[k] for k in ("size", "mtime_ns"))


def save_npz(path, meta, arrays):
    """Write `arrays` (name -> array) and `meta` (JSON) to the `.npz` at `path`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return path


@contextlib.contextmanager
def _opened(path):
    with np.load(path, allow_pickle=False) as z:
        yield json.loads(z["meta"].tobytes().decode()), z


def _arrays(z):
    return {name: z[name] for name in z.files if name != "meta"}


def load_cached(path, valid, what):
    """(meta, arrays) of the cache at `path`, or None when it is absent, when `valid(meta)` is
    false (stale, another version) or when it is damaged (logged): the caller builds it again."""
    if not os.path.exists(path):
        return None
    try:
        with _opened(path) as (meta, z):
            return (meta, _arrays(z)) if valid(meta) else None
    except NPZ_ERRORS as e:
        log.warning("ignoring the unreadable %s %s: %s", what, path, e)
        return None


def cached_or_built(cache_path, cached, build, save, what):
    """`cached()` (None when there is no usable cache at `cache_path`), or else `build()` and
    `save(value)`, one process at a time (`data.atomic.build_once`: another process that needs
    it meanwhile waits, then loads what was built). A folder that cannot be written (a
    read-only data folder) only loses the cache, logged naming `what`: the value still serves."""
    def built():
        value = build()
        try:
            save(value)
        except OSError as e:
            log.warning("could not cache %s: %s", what, e)
        return value

    return build_once(cache_path, cached, built)


def load_versioned(path, version, what, remedy=""):
    """(meta, arrays) of the input `path`, a `what` (e.g. "split file") of format `version`;
    a damaged file or one of another version raises `DataInputError` naming it (and `remedy`)."""
    with reading_npz(path, what), _opened(path) as (meta, z):
        if meta.get("version") != version:
            raise DataInputError(path, None, None, f"{what} version {meta.get('version')}, expected {version}{remedy}")
        return meta, _arrays(z)
