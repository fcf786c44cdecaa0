"""On-disk predictions of one model over one input: a folder of `.npy` files and a manifest.

``<out>/<model>/`` holds, one row per product in input order (row = the product's
position in the input file)::

    ids.npy                   (n,) int64    Kaggle product ids
    labels.npy                (n,) int32    class ids (row of category_names.csv), -1 unknown
    n_images.npy              (n,) int16    images of the product (undecodable ones included)
    product_hash.npy          (n, 16) uint8 product hash (data.md5_dict.product_hash)
    probs.<variant>.f16.npy   (n, classes) float16  per-product probabilities
    top.<variant>.npy         (n, k) int32  the k most probable classes, best first
    manifest.json             what produced the folder, the variants, accuracies, problems

A variant is a per-product combiner applied after an image-MD5 mode,
``<combiner>.<md5 mode>`` (``mean.none``, ``geometric.unique``; see predict.combine and
predict.md5_modes). Every variant's probabilities are stored, so ensembles and the table
can re-combine them later; float16 keeps the full test set (1.77 M products x 5,270
classes) at 18.6 GB per variant, read back memory-mapped (``np.load(mmap_mode="r")``).

The arrays are written while the predictor runs, row by row at any row index (products
complete out of order), through small write-behind buffers, so memory stays bounded
whatever the input size; each file is a valid `.npy` once closed, its header written last.
The folder is built under a hidden temporary name beside the final one,
``.<model>.tmp-<pid>``, and renamed into place when complete: a folder with a manifest is
always whole, and a glob such as ``preds/test/*/`` never picks up an unfinished one. The
writer runs under the folder's `data.locks.output_lock` (predict.run), so the temporary
folders of its name that it finds were left by killed runs: it removes them.
"""
import glob
import json
import os
import shutil
import struct

import numpy as np

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
HASH_SIZE = 16
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_ALIGN = 64
_MAX_ROWS = 1 << 62    # header space is reserved for any row count up to this


def variant_name(combiner, md5_mode):
    return f"{combiner}.{md5_mode}"


def split_variant(variant):
    """``"power0.1.unique"`` -> ``("power0.1", "unique")`` (MD5 modes hold no dot)."""
    combiner, _, md5_mode = variant.rpartition(".")
    return combiner, md5_mode


def probs_file(variant):
    return f"probs.{variant}.f16.npy"


def top_file(variant):
    return f"top.{variant}.npy"


def npy_header(dtype, shape, length=None):
    """A `.npy` (version 1.0) header, padded with spaces to `length` bytes (default: the next
    multiple of 64), so that a header with the final shape can overwrite a reserved one."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
        np.lib.format.dtype_to_descr(np.dtype(dtype)), tuple(int(s) for s in shape))
    bare = len(_NPY_MAGIC) + 2 + len(text) + 1
    length = length or -(-bare // _HEADER_ALIGN) * _HEADER_ALIGN
    if bare > length or length - len(_NPY_MAGIC) - 2 > 0xFFFF:
        raise ValueError(f"npy header for shape {shape} does not fit in {length} bytes")
    text += " " * (length - bare) + "\n"
    return _NPY_MAGIC + struct.pack("<H", len(text)) + text.encode("latin1")


class RowArrayWriter:
    """A `.npy` file of rows (``(n, *row_shape)``) written at any row index, n known at the end.

    Rows wait in a write-behind buffer of at most `buffer_bytes`; a flush writes each run of
    consecutive rows with one `os.pwrite`."""

    def __init__(self, path, row_shape, dtype, buffer_bytes=4 << 20):
        self.path, self.row_shape, self.dtype = path, tuple(row_shape), np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        self.header_bytes = len(npy_header(self.dtype, (_MAX_ROWS,) + self.row_shape))
        self.max_pending = max(1, buffer_bytes // max(self.row_bytes, 1))
        self.pending = {}
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, row, values):
        data = np.asarray(values, self.dtype)
        if data.shape != self.row_shape:
            raise ValueError(f"{self.path}: row {row} has shape {data.shape}, expected {self.row_shape}")
        self.pending[row] = data.tobytes()
        if len(self.pending) >= self.max_pending:
            self.flush()

    def flush(self):
        rows = sorted(self.pending)
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i] != rows[i - 1] + 1:
                chunk = b"".join(self.pending[r] for r in rows[start:i])
                os.pwrite(self.fd, chunk, self.header_bytes + rows[start] * self.row_bytes)
                start = i
        self.pending.clear()

    def close(self, n_rows):
        """Flush, size the file for exactly `n_rows` rows and write the final header."""
        self.flush()
        os.ftruncate(self.fd, self.header_bytes + n_rows * self.row_bytes)
        os.pwrite(self.fd, npy_header(self.dtype, (n_rows,) + self.row_shape, self.header_bytes), 0)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None

    def discard(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class PredictionWriter:
    """Writes the folder of one model's predictions (see the module docstring)."""

    def __init__(self, folder, classes, variants, top_k=5):
        self.folder, self.classes, self.variants = folder, classes, tuple(variants)
        self.top_k = min(top_k, classes)
        remove_leftovers(folder)
        self.tmp = hidden_sibling(folder, f"tmp-{os.getpid()}")
        os.makedirs(self.tmp)

        def path(name):
            return os.path.join(self.tmp, name)

        self.ids = RowArrayWriter(path("ids.npy"), (), np.int64)
        self.labels = RowArrayWriter(path("labels.npy"), (), np.int32)
        self.n_images = RowArrayWriter(path("n_images.npy"), (), np.int16)
        self.hashes = RowArrayWriter(path("product_hash.npy"), (HASH_SIZE,), np.uint8)
        self.probs = {v: RowArrayWriter(path(probs_file(v)), (classes,), np.float16) for v in self.variants}
        self.tops = {v: RowArrayWriter(path(top_file(v)), (self.top_k,), np.int32) for v in self.variants}

    def _writers(self):
        return [self.ids, self.labels, self.n_images, self.hashes, *self.probs.values(), *self.tops.values()]

    def write(self, row, product_id, label, n_images, product_hash, vectors):
        """One product: `vectors` maps every variant to its probability vector."""
        self.ids.write(row, product_id)
        self.labels.write(row, label)
        self.n_images.write(row, n_images)
        self.hashes.write(row, np.frombuffer(product_hash, np.uint8))
        for variant in self.variants:
            vector = vectors[variant]
            self.probs[variant].write(row, vector)
            self.tops[variant].write(row, top_classes(vector, self.top_k))

    def close(self, n_rows, manifest):
        """Finish every file, write the manifest and move the folder into place; return the manifest."""
        for writer in self._writers():
            writer.close(n_rows)
        manifest = dict(manifest, format_version=FORMAT_VERSION, products=n_rows, classes=self.classes,
                        variants=list(self.variants), top_k=self.top_k)
        with open(os.path.join(self.tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        publish_folder(self.tmp, self.folder)
        return manifest

    def discard(self):
        for writer in self._writers():
            writer.discard()
        shutil.rmtree(self.tmp, ignore_errors=True)


def top_classes(vector, k):
    """The `k` highest-scoring classes of `vector`, best first (ties: lower class first)."""
    vector = np.asarray(vector)
    part = np.argpartition(-vector, k - 1)[:k] if k < len(vector) else np.arange(len(vector))
    return part[np.lexsort((part, -vector[part]))]


def hidden_sibling(folder, tag):
    """``<parent>/.<name>.<tag>``: a hidden name beside `folder` (temporary and replaced folders)."""
    parent, name = os.path.split(os.path.normpath(folder))
    return os.path.join(parent, f".{name}.{tag}")


def remove_leftovers(folder):
    """Remove the temporary and replaced folders of `folder` that killed runs left behind.
    Call it holding the folder's output lock: then no other run is writing them."""
    for pattern in ("tmp-*", "old-*"):
        for path in glob.glob(glob.escape(hidden_sibling(folder, "")) + pattern):
            shutil.rmtree(path)


def publish_folder(tmp, folder):
    """Rename the complete folder `tmp` onto `folder`, replacing an older one."""
    old = None
    if os.path.exists(folder):
        old = hidden_sibling(folder, f"old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old:
        shutil.rmtree(old)


class Predictions:
    """A finished prediction folder, its arrays memory-mapped."""

    def __init__(self, folder):
        self.folder = folder
        path = os.path.join(folder, MANIFEST)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{folder}: no {MANIFEST}: not a (finished) prediction folder")
        with open(path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {self.manifest.get('format_version')}, "
                             f"expected {FORMAT_VERSION}")
        self.name = self.manifest.get("name") or os.path.basename(os.path.normpath(folder))
        self.variants = tuple(self.manifest["variants"])
        self.classes = int(self.manifest["classes"])
        self.ids = self._load("ids.npy")
        self.labels = self._load("labels.npy")
        self.n_images = self._load("n_images.npy")
        self.product_hash = self._load("product_hash.npy")

    def _load(self, name, row_shape=None):
        path = os.path.join(self.folder, name)
        array = np.load(path, mmap_mode="r")
        n = self.manifest["products"]
        if len(array) != n or (row_shape is not None and array.shape[1:] != row_shape):
            raise ValueError(f"{path}: shape {array.shape} does not match the manifest ({n} products)")
        return array

    def __len__(self):
        return len(self.ids)

    @property
    def has_labels(self):
        return len(self.labels) > 0 and bool(np.all(np.asarray(self.labels) >= 0))

    def probs(self, variant):
        if variant not in self.variants:
            raise KeyError(f"{self.folder}: no variant {variant!r}; it holds {', '.join(self.variants)}")
        return self._load(probs_file(variant), (self.classes,))

    def top(self, variant):
        if variant not in self.variants:
            raise KeyError(f"{self.folder}: no variant {variant!r}; it holds {', '.join(self.variants)}")
        return self._load(top_file(variant))
