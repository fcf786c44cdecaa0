"""MXNet's NDArray list file (``.params``) read and written with numpy alone.

What ``mx.nd.save(dict)`` and Gluon's ``save_parameters`` write, so that a process without
MXNet (a PyTorch process: the two frameworks must never share one) can read a Gluon
checkpoint, and MXNet can load a file written from numpy. Layout, all little-endian:

- file: ``uint64`` magic ``0x112``, ``uint64`` reserved 0, ``uint64`` array count, the
  arrays, ``uint64`` name count (0 for an unnamed list), then each name as ``uint64``
  length + UTF-8 bytes;
- array: ``uint32`` magic (``0xF993FAC9``, or ``0xF993FACA`` as written in NumPy-shape
  mode, which also allows 0-d arrays), ``int32`` storage type (0 = dense), ``int32`` ndim
  and ``int64`` dims, ``int32`` device type and id (where the array lived; ignored on
  load), ``int32`` dtype flag, then the C-order data.

Only dense storage is handled (Gluon parameters are dense); sparse arrays, the pre-2017
formats and "none" (shapeless) arrays are reported as ``ParamsFormatError``.
"""
import numpy as np

from data.atomic import atomic_open

LIST_MAGIC = 0x112
ARRAY_MAGIC = 0xF993FAC9
NP_SHAPE_ARRAY_MAGIC = 0xF993FACA
DENSE_STORAGE = 0
CPU_DEVICE = 1

# mshadow's type flags (mshadow/base.h): the dtypes an MXNet 1.x NDArray can hold.
DTYPE_FLAGS = {0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"), 4: np.dtype("<i4"),
               5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?")}
FLAG_OF_DTYPE = {dtype.newbyteorder("="): flag for flag, dtype in DTYPE_FLAGS.items()}


class ParamsFormatError(ValueError):
    """A file is not a dense MXNet NDArray list (the message names the file and the byte
    offset), or an array cannot be written as one (the message names the array)."""


class _Reader:
    """Sequential little-endian reads over a bytes buffer, with located errors."""

    def __init__(self, data, path):
        self.data, self.path, self.pos = data, path, 0

    def error(self, reason, at=None):
        return ParamsFormatError("%s at byte %d: %s" % (self.path, self.pos if at is None else at, reason))

    def take(self, n):
        if self.pos + n > len(self.data):
            raise self.error("file ends early (%d more bytes needed, %d left)" % (n, len(self.data) - self.pos))
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def scalar(self, fmt):
        dtype = np.dtype(fmt)
        return np.frombuffer(self.take(dtype.itemsize), dtype)[0].item()

    def array(self):
        start = self.pos
        magic = self.scalar("<u4")
        if magic not in (ARRAY_MAGIC, NP_SHAPE_ARRAY_MAGIC):
            raise self.error("unsupported NDArray magic 0x%08X (dense arrays as saved by MXNet >= 1.0 only)"
                             % magic, at=start)
        storage = self.scalar("<i4")
        if storage != DENSE_STORAGE:
            raise self.error("storage type %d is sparse; only dense arrays are supported" % storage, at=start)
        ndim = self.scalar("<i4")
        if ndim < 0:
            raise self.error("array without a shape (a 'none' NDArray)", at=start)
        shape = tuple(int(d) for d in np.frombuffer(self.take(8 * ndim), "<i8"))
        self.take(8)  # device type and id
        flag = self.scalar("<i4")
        if flag not in DTYPE_FLAGS:
            raise self.error("unknown dtype flag %d" % flag, at=start)
        dtype = DTYPE_FLAGS[flag]
        values = np.frombuffer(self.take(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize), dtype)
        return values.reshape(shape).astype(dtype.newbyteorder("="))


def parse(data, path="<bytes>"):
    """``{name: numpy array}`` (or a list, for an unnamed file) from a file's bytes."""
    reader = _Reader(data, path)
    magic, _reserved = reader.scalar("<u8"), reader.scalar("<u8")
    if magic != LIST_MAGIC:
        raise reader.error("not an MXNet NDArray list file (magic 0x%X, expected 0x%X)" % (magic, LIST_MAGIC), at=0)
    arrays = [reader.array() for _ in range(reader.scalar("<u8"))]
    n_names = reader.scalar("<u8")
    names = [reader.take(reader.scalar("<u8")).decode("utf-8") for _ in range(n_names)]
    if reader.pos != len(data):
        raise reader.error("%d unexpected bytes after the names" % (len(data) - reader.pos))
    if not names:
        return arrays
    if len(names) != len(arrays) or len(set(names)) != len(names):
        raise reader.error("%d names for %d arrays, or repeated names" % (len(names), len(arrays)))
    return dict(zip(names, arrays))


def load(path):
    """``{name: numpy array}`` of an MXNet ``.params`` file (a list for an unnamed one)."""
    with open(path, "rb") as f:
        return parse(f.read(), str(path))


def _encode_array(name, array):
    array = np.asarray(array)
    flag = FLAG_OF_DTYPE.get(array.dtype.newbyteorder("="))
    if flag is None:
        raise ParamsFormatError("array %r: dtype %s has no MXNet equivalent" % (name, array.dtype))
    if array.ndim == 0 or array.size == 0:
        # MXNet (outside NumPy-shape mode) reads such shapes as "unknown" and skips the data.
        raise ParamsFormatError("array %r: shape %s cannot be stored for Gluon, MXNet reads 0-d and empty "
                                "arrays back as shapeless" % (name, array.shape))
    return b"".join([np.array([ARRAY_MAGIC, DENSE_STORAGE, array.ndim], "<u4").tobytes(),
                     np.array(array.shape, "<i8").tobytes(),
                     np.array([CPU_DEVICE, 0, flag], "<i4").tobytes(),
                     np.ascontiguousarray(array, DTYPE_FLAGS[flag]).tobytes()])


def serialize(arrays):
    """The bytes of an MXNet NDArray list holding ``arrays`` (``{name: array}``), in the
    dict's order, as ``mx.nd.save`` writes them (a file MXNet and Gluon can load)."""
    names = [str(name) for name in arrays]
    parts = [np.array([LIST_MAGIC, 0, len(names)], "<u8").tobytes()]
    parts += [_encode_array(name, array) for name, array in arrays.items()]
    parts.append(np.array([len(names)], "<u8").tobytes())
    for name in names:
        encoded = name.encode("utf-8")
        parts += [np.array([len(encoded)], "<u8").tobytes(), encoded]
    return b"".join(parts)


def save(path, arrays):
    """Write ``{name: array}`` as an MXNet ``.params`` file, published only once complete
    (``data.atomic``)."""
    data = serialize(arrays)
    with atomic_open(path, "wb") as f:
        f.write(data)
