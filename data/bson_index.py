"""Offset index of a Kaggle BSON file: one sequential pass, then random access by position or id.

A Kaggle BSON file is a plain concatenation of documents, each starting with its int32
length. One pass over the file walks those length prefixes and reads the few header bytes
of each document (`_id`, the number of `imgs`, `category_id`) without decoding or copying
the JPEG bytes. The result is a compact numpy table (about 30 bytes a product, so the
7 M-product `train.bson` indexes into ~200 MB whatever its 58 GB) that is cached beside the
file and gives random access (`os.pread`, safe across `fork`) and byte-balanced ranges for
parallel readers.

Bad input (a truncated last document, a length prefix that is negative, too small or runs
past the end of the file, bytes that are not BSON, a product without `imgs`, a train
product without `category_id`, a duplicate `_id`) raises `BsonFormatError` naming file,
offset and product. With `skip_bad=True` the problem is logged and recorded in
`index.problems` instead, and every good document around it is kept: after a broken
length prefix the scanner re-synchronises on the next document start.

    python -m data.bson_index train.bson            # build (or load) and summarise
"""
import argparse
import json
import logging
import os
import struct

import numpy as np

from data.atomic import atomic_path
from data.errors import BsonFormatError

log = logging.getLogger(__name__)

INDEX_VERSION = 1
INDEX_DTYPE = np.dtype([       # field order = the order `scan_bson` yields them
    ("offset", "<i8"),
    ("length", "<i4"),
    ("product_id", "<i8"),
    ("n_images", "<i2"),
    ("category_id", "<i8"),   # -1 when the document has none (test.bson)
])
NO_CATEGORY = -1
MIN_DOC_LEN = 5               # int32 length + terminating NUL: the empty document
MAX_DOC_LEN = 16 * 1024 * 1024  # MongoDB's own document size limit
CHUNK_BYTES = 64 * 1024 * 1024
KINDS = ("auto", "train", "test")

_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")
# The two ways a Kaggle document can start: `_id` as int32 or as int64.
_ID_HEADERS = (b"\x10_id\x00", b"\x12_id\x00")
# Fixed byte sizes of the BSON element types a product may hold; None = length-prefixed.
_FIXED_SIZES = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
                0x7F: 0, 0xFF: 0}


class _BadDocument(Exception):
    """Internal: the document at hand is not a valid product; carries the reason."""

    def __init__(self, reason, product_id=None):
        super().__init__(reason)
        self.reason, self.product_id = reason, product_id


def _element_end(buf, pos, end):
    """Position after the BSON element starting at `pos` (type byte, key, value)."""
    etype = buf[pos]
    key_end = buf.find(b"\x00", pos + 1, end)
    if key_end < 0:
        raise _BadDocument(f"unterminated element name at +{pos}")
    value = key_end + 1
    size = _FIXED_SIZES.get(etype)
    if size is not None:
        stop = value + size
    elif etype in (0x02, 0x0D, 0x0E):          # string, code, symbol: int32 size + bytes
        stop = value + 4 + _INT32.unpack_from(buf, value)[0]
    elif etype in (0x03, 0x04):                # embedded document, array
        stop = value + _INT32.unpack_from(buf, value)[0]
    elif etype == 0x05:                        # binary: int32 size + subtype + bytes
        stop = value + 5 + _INT32.unpack_from(buf, value)[0]
    elif etype == 0x0B:                        # regex: two cstrings
        stop = buf.find(b"\x00", buf.find(b"\x00", value, end) + 1, end) + 1
    else:
        raise _BadDocument(f"unknown BSON element type 0x{etype:02x}")
    if stop > end or stop <= value - 1:
        raise _BadDocument("element runs past the end of its document")
    return buf[pos + 1:key_end], etype, value, stop


def _count_images(buf, start, stop):
    """Number of `{picture: binary}` documents in the `imgs` array spanning [start, stop)."""
    if _INT32.unpack_from(buf, start)[0] != stop - start or buf[stop - 1] != 0:
        raise _BadDocument("corrupt imgs array")
    n, pos = 0, start + 4
    while pos < stop - 1:
        _, etype, value, pos = _element_end(buf, pos, stop - 1)
        if etype != 0x03:
            raise _BadDocument(f"imgs[{n}] is not a document")
        doc_end = value + _INT32.unpack_from(buf, value)[0]
        picture = value + 4
        if buf[picture] != 0x05 or buf[picture + 1:picture + 9] != b"picture\x00" \
                or picture + 14 + _INT32.unpack_from(buf, picture + 9)[0] > doc_end:
            raise _BadDocument(f"imgs[{n}] has no binary 'picture'")
        n += 1
    return n


def _parse_kaggle_layout(buf, start, end):
    """Fast path for the layout of Kaggle's files (`_id` int32, `imgs`, then `category_id`
    int32 or nothing). Returns None for anything else, which `_parse_document` then walks."""
    if buf[start + 4:start + 9] != b"\x10_id\x00" or buf[start + 13:start + 19] != b"\x04imgs\x00":
        return None
    array_end = start + 19 + _INT32.unpack_from(buf, start + 19)[0]
    pos, n = start + 23, 0
    while pos < array_end - 1:
        # Element "<digit>": {picture: binary}; keys longer than one digit take the slow path.
        if buf[pos] != 0x03 or buf[pos + 2] != 0 or buf[pos + 7:pos + 16] != b"\x05picture\x00":
            return None
        doc_len = _INT32.unpack_from(buf, pos + 3)[0]
        if doc_len < 19:
            return None
        pos += 3 + doc_len
        n += 1
    if pos != array_end - 1 or buf[pos] != 0 or n == 0:
        return None
    if array_end == end:
        return _INT32.unpack_from(buf, start + 9)[0], n, NO_CATEGORY
    if array_end + 17 == end and buf[array_end:array_end + 13] == b"\x10category_id\x00":
        return _INT32.unpack_from(buf, start + 9)[0], n, _INT32.unpack_from(buf, array_end + 13)[0]
    return None


def _parse_document(buf, start, length):
    """(product_id, n_images, category_id) of the document at buf[start:start+length].

    Walks the top-level elements only; JPEG bytes are skipped, never copied."""
    end = start + length - 1
    if buf[end] != 0:
        raise _BadDocument("document does not end with NUL: not BSON")
    if length > 40:
        fast = _parse_kaggle_layout(buf, start, end)
        if fast is not None:
            return fast
    product_id, n_images, category_id = None, None, NO_CATEGORY
    pos = start + 4
    try:
        while pos < end:
            key, etype, value, pos = _element_end(buf, pos, end)
            if key == b"_id":
                if etype == 0x10:
                    product_id = _INT32.unpack_from(buf, value)[0]
                elif etype == 0x12:
                    product_id = _INT64.unpack_from(buf, value)[0]
                else:
                    raise _BadDocument(f"_id has BSON type 0x{etype:02x}, not an integer")
            elif key == b"imgs":
                if etype != 0x04:
                    raise _BadDocument("imgs is not an array", product_id)
                n_images = _count_images(buf, value, pos)
            elif key == b"category_id":
                if etype == 0x10:
                    category_id = _INT32.unpack_from(buf, value)[0]
                elif etype == 0x12:
                    category_id = _INT64.unpack_from(buf, value)[0]
                else:
                    raise _BadDocument(f"category_id has BSON type 0x{etype:02x}, not an integer", product_id)
        if pos != end:
            raise _BadDocument("elements overrun the document", product_id)
    except _BadDocument as e:
        e.product_id = e.product_id if e.product_id is not None else product_id
        raise
    except (struct.error, IndexError):
        raise _BadDocument("corrupt document: not BSON", product_id) from None
    if product_id is None:
        raise _BadDocument("document has no integer _id")
    if not n_images:
        raise _BadDocument("product without images (imgs missing or empty)", product_id)
    return product_id, n_images, category_id


def _plausible_start(buf, pos, avail_end):
    """True when a document plausibly starts at `pos`: sane length, begins with an `_id`,
    and (when it lies wholly in the buffer) ends with NUL."""
    if pos < 0 or pos + 9 > avail_end:
        return False
    length = _INT32.unpack_from(buf, pos)[0]
    if not (MIN_DOC_LEN < length <= MAX_DOC_LEN) or buf[pos + 4:pos + 9] not in _ID_HEADERS:
        return False
    return pos + length > avail_end or buf[pos + length - 1] == 0


def _next_start(buf, pos, avail_end):
    """Buffer position of the next plausible document start after `pos`, or None."""
    search = pos + 5
    while True:
        hits = [h for h in (buf.find(hdr, search, avail_end) for hdr in _ID_HEADERS) if h >= 0]
        if not hits:
            return None
        if _plausible_start(buf, min(hits) - 4, avail_end):
            return min(hits) - 4
        search = min(hits) + 1


class _Reader:
    """A sliding window over a file: `fill(n)` makes n bytes available after `pos`."""

    def __init__(self, f, file_size):
        self.f, self.file_size = f, file_size
        self.buf = bytearray(CHUNK_BYTES)
        self.view = memoryview(self.buf)
        self.base = self.filled = self.pos = 0

    @property
    def offset(self):
        return self.base + self.pos

    @property
    def at_eof(self):
        return self.base + self.filled >= self.file_size

    def fill(self, need):
        """Ensure `need` bytes after `pos` (fewer only at the end of the file)."""
        if self.filled - self.pos >= need or self.at_eof:
            return
        remaining = self.filled - self.pos
        self.buf[:remaining] = self.buf[self.pos:self.filled]
        self.base += self.pos
        self.pos, self.filled = 0, remaining
        while self.filled < len(self.buf):
            n = self.f.readinto(self.view[self.filled:])
            if not n:
                break
            self.filled += n

    def resync(self):
        """Move `pos` to the next plausible document start; False at end of file."""
        while True:
            nxt = _next_start(self.buf, self.pos, self.filled)
            if nxt is not None:
                self.pos = nxt
                self.fill(MAX_DOC_LEN)   # so that the candidate's end can be checked
                if _plausible_start(self.buf, self.pos, self.filled):
                    return True
                continue
            if self.at_eof:
                self.pos = self.filled
                return False
            self.pos = max(self.pos, self.filled - 16)   # keep a tail in case a header straddles
            self.fill(len(self.buf))


def scan_bson(path, skip_bad=False, kind="auto", problems=None, with_bytes=False):
    """Stream the documents of a BSON file in one sequential pass.

    Yields `(offset, length, product_id, n_images, category_id)` per good document, plus
    the document's bytes (a memoryview valid until the next item) when `with_bytes`.
    `kind` "train" requires `category_id` in every product; "auto" decides from the first
    good document. Problems raise `BsonFormatError`, or with `skip_bad` are appended to
    `problems` (a list of dicts) and skipped; duplicate ids are checked by `BsonIndex.build`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    problems = [] if problems is None else problems

    def report(offset, product_id, reason):
        err = BsonFormatError(path, offset, product_id, reason)
        if not skip_bad:
            raise err
        log.warning("skipping: %s", err)
        problems.append(err.as_dict())

    with open(path, "rb", buffering=0) as f:
        r = _Reader(f, os.fstat(f.fileno()).st_size)
        buf = r.buf
        while True:
            r.fill(13)   # length prefix and an int32 `_id` element
            pos, offset = r.pos, r.offset
            if pos >= r.filled:
                return
            if r.filled - pos < 4:
                report(offset, None, f"truncated document: {r.filled - pos} trailing bytes, no length prefix")
                return
            length = _INT32.unpack_from(buf, pos)[0]
            if MIN_DOC_LEN <= length <= MAX_DOC_LEN:
                r.fill(length)
                pos = r.pos
            if length < MIN_DOC_LEN or length > MAX_DOC_LEN or offset + length > r.file_size:
                product_id = _INT32.unpack_from(buf, pos + 9)[0] \
                    if buf[pos + 4:pos + 9] == _ID_HEADERS[0] and r.filled - pos >= 13 else None
                if length < 0:
                    reason = f"invalid length prefix: negative document length {length}"
                elif length < MIN_DOC_LEN:
                    reason = f"invalid length prefix: document length {length} is too small"
                elif length > MAX_DOC_LEN:
                    reason = f"invalid length prefix: document length {length} exceeds the 16 MiB BSON limit"
                else:
                    reason = (f"truncated document: length {length} runs past the end of the file "
                              f"({r.file_size - offset} bytes left)")
                report(offset, product_id, reason)
                if not r.resync():
                    return
                continue
            try:
                product_id, n_images, category_id = _parse_document(buf, pos, length)
            except _BadDocument as e:
                report(offset, e.product_id, e.reason)
                # Trust the length prefix only when a document plausibly follows it.
                if offset + length == r.file_size or _plausible_start(buf, pos + length, r.filled):
                    r.pos = pos + length
                elif not r.resync():
                    return
                continue
            if kind == "auto":
                kind = "train" if category_id != NO_CATEGORY else "test"
            if kind == "train" and category_id == NO_CATEGORY:
                report(offset, product_id, "train product without category_id")
            elif with_bytes:
                yield offset, length, product_id, n_images, category_id, r.view[pos:pos + length]
            else:
                yield offset, length, product_id, n_images, category_id
            r.pos = pos + length


def _drop_duplicates(path, records, skip_bad, problems):
    """Keep the first document of each `_id`; later ones are errors (or skipped)."""
    ids = records["product_id"]
    _, first = np.unique(ids, return_index=True)
    if len(first) == len(ids):
        return records
    keep = np.zeros(len(ids), bool)
    keep[first] = True
    first_offset = dict(zip(ids[first].tolist(), records["offset"][first].tolist()))
    for row in records[~keep][:1 if not skip_bad else None]:
        pid = int(row["product_id"])
        err = BsonFormatError(path, int(row["offset"]), pid,
                              f"duplicate _id (first seen at offset {first_offset[pid]})")
        if not skip_bad:
            raise err
        log.warning("skipping: %s", err)
        problems.append(err.as_dict())
    return records[keep]


def index_path_for(path):
    return path + ".index.npz"


def _file_signature(path):
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class BsonIndex:
    """Positions of every good product of a BSON file, in file order, with random access."""

    def __init__(self, path, records, kind, problems=()):
        self.path = path
        self.records = records
        self.kind = kind
        self.problems = list(problems)
        self._fd = None
        self._fd_pid = None
        self._positions = None

    # -- building, saving, loading -------------------------------------------------------
    @classmethod
    def build(cls, path, skip_bad=False, kind="auto", progress=False):
        """Index `path` in one sequential pass (see `scan_bson`)."""
        problems, blocks, rows = [], [], []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=f"index {os.path.basename(path)}")
        done = 0
        for row in scan_bson(path, skip_bad=skip_bad, kind=kind, problems=problems):
            rows.append(row)
            if len(rows) == 65536:   # numpy blocks keep memory at ~30 bytes a product
                blocks.append(np.array(rows, dtype=INDEX_DTYPE))
                rows.clear()
                if bar is not None:
                    end = row[0] + row[1]
                    bar.update(end - done)
                    done = end
        blocks.append(np.array(rows, dtype=INDEX_DTYPE) if rows else np.zeros(0, INDEX_DTYPE))
        if bar is not None:
            bar.update(bar.total - done)
            bar.close()
        records = np.concatenate(blocks)
        first_category = records["category_id"][0] if len(records) else NO_CATEGORY
        records = _drop_duplicates(path, records, skip_bad, problems)
        if kind == "auto":
            kind = "test" if first_category == NO_CATEGORY else "train"
        return cls(path, records, kind, problems)

    def save(self, index_path=None):
        index_path = index_path or index_path_for(self.path)
        meta = dict(_file_signature(self.path), version=INDEX_VERSION, kind=self.kind, problems=self.problems)
        with atomic_path(index_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, records=self.records, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return index_path

    @classmethod
    def load(cls, path, index_path=None):
        """The cached index of `path`, or None when absent or stale (file changed)."""
        index_path = index_path or index_path_for(path)
        if not os.path.exists(index_path):
            return None
        with np.load(index_path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("version") != INDEX_VERSION or \
                    {k: meta.get(k) for k in ("size", "mtime_ns")} != _file_signature(path):
                return None
            return cls(path, z["records"], meta["kind"], meta["problems"])

    @classmethod
    def load_or_build(cls, path, skip_bad=False, kind="auto", progress=False, index_path=None):
        """The cached index when valid, else build it and cache it beside the file.

        A cached index that recorded problems is only reused with `skip_bad` (without it,
        the build runs again so that the first problem raises)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such BSON file")
        index = cls.load(path, index_path)
        if index is not None and (skip_bad or not index.problems) and kind in ("auto", index.kind):
            return index
        index = cls.build(path, skip_bad=skip_bad, kind=kind, progress=progress)
        try:
            index.save(index_path)
        except OSError as e:   # a read-only data folder: the index still works, uncached
            log.warning("could not cache the index of %s: %s", path, e)
        return index

    # -- lookups ---------------------------------------------------------------------------
    def __len__(self):
        return len(self.records)

    @property
    def product_ids(self):
        return self.records["product_id"]

    @property
    def category_ids(self):
        return self.records["category_id"]

    @property
    def n_images(self):
        return self.records["n_images"]

    def position_of(self, product_id):
        if self._positions is None:
            self._positions = {pid: i for i, pid in enumerate(self.product_ids.tolist())}
        try:
            return self._positions[int(product_id)]
        except KeyError:
            raise KeyError(f"{self.path}: no product with _id {product_id}") from None

    def positions_of(self, product_ids):
        """Vectorised `position_of` for an array of ids."""
        ids = np.asarray(product_ids, np.int64)
        order = np.argsort(self.product_ids, kind="stable")
        found = np.searchsorted(self.product_ids, ids, sorter=order)
        found = np.minimum(found, len(order) - 1) if len(order) else found
        pos = order[found] if len(order) else np.zeros(0, np.int64)
        missing = (len(order) == 0) | (self.product_ids[pos] != ids) if len(ids) else np.zeros(0, bool)
        if np.any(missing):
            raise KeyError(f"{self.path}: no product with _id {int(ids[np.argmax(missing)])}")
        return pos

    # -- reading ---------------------------------------------------------------------------
    def _file(self):
        # One descriptor per process: `os.pread` has no shared file position, so a forked
        # child may even reuse it, but reopening keeps descriptors private to a process.
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd, self._fd_pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read_raw(self, pos):
        """The raw BSON bytes of the product at position `pos`."""
        offset, length, product_id = self.records.item(pos)[:3]
        return self._pread(offset, length, product_id)

    def _pread(self, offset, length, product_id):
        data = os.pread(self._file(), length, offset)
        if len(data) != length:
            raise BsonFormatError(self.path, offset, product_id, "file is shorter than its index: was it modified?")
        return data

    def prefetch(self, positions):
        """Ask the kernel to start reading the products at `positions` (posix_fadvise WILLNEED).

        Random reads of a file that is not in the page cache wait for the disk one at a time;
        announcing the next few dozen products keeps many reads in flight (several times
        faster on an SSD). No-op where posix_fadvise does not exist."""
        if not hasattr(os, "posix_fadvise"):
            return
        fd = self._file()
        rows = self.records[positions]
        for offset, length in zip(rows["offset"].tolist(), rows["length"].tolist()):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)

    def read(self, pos):
        """The decoded document (pymongo's `bson.decode`) at position `pos`."""
        import bson
        return bson.decode(self.read_raw(pos))

    def get(self, product_id):
        return self.read(self.position_of(product_id))

    def pictures(self, pos, raw=None):
        """The JPEG bytes of each image of the product at `pos`, in `imgs` order.

        `raw` is the document's bytes when already read (e.g. from `iter_raw`). A document
        that no longer matches its index entry (the file changed) raises `BsonFormatError`."""
        import bson
        offset, length, product_id, n_images, _ = self.records.item(pos)   # one cheap row fetch
        try:
            doc = bson.decode(self._pread(offset, length, product_id) if raw is None else raw)
            pictures = [img["picture"] for img in doc["imgs"]]
        except (bson.errors.BSONError, KeyError, TypeError) as e:
            raise BsonFormatError(self.path, offset, product_id, f"cannot decode the product: {e}") from None
        if doc.get("_id") != product_id or len(pictures) != n_images:
            raise BsonFormatError(self.path, offset, product_id,
                                  "document differs from its index entry: was the file modified?")
        return pictures

    def iter_raw(self, start=0, stop=None, chunk_bytes=CHUNK_BYTES):
        """Yield `(pos, raw_bytes)` for positions [start, stop) with large sequential reads."""
        stop = len(self) if stop is None else min(stop, len(self))
        offsets, lengths = self.records["offset"], self.records["length"]
        i = start
        while i < stop:
            # Read a run of consecutive documents of about chunk_bytes in one call.
            begin = int(offsets[i])
            j = int(np.searchsorted(offsets, begin + chunk_bytes, side="left", sorter=None))
            j = max(min(j, stop), i + 1)
            end = int(offsets[j - 1] + lengths[j - 1])
            block = os.pread(self._file(), end - begin, begin)
            if len(block) != end - begin:
                raise BsonFormatError(self.path, begin, int(self.records["product_id"][i]),
                                      "file is shorter than its index: was it modified?")
            for k in range(i, j):
                lo = int(offsets[k]) - begin
                yield k, block[lo:lo + int(lengths[k])]
            i = j

    def iter_documents(self, start=0, stop=None):
        """Yield `(pos, document)` decoded with pymongo's `bson`."""
        import bson
        for pos, raw in self.iter_raw(start, stop):
            yield pos, bson.decode(raw)

    def partition(self, n_parts):
        """`n_parts` contiguous `(start, stop)` position ranges holding about equal bytes."""
        if n_parts < 1:
            raise ValueError("n_parts must be >= 1")
        cum = np.cumsum(self.records["length"], dtype=np.int64)
        total = int(cum[-1]) if len(cum) else 0
        cuts = [0] + [int(np.searchsorted(cum, total * k / n_parts, side="left")) + 1
                      for k in range(1, n_parts)] + [len(self)]
        cuts = np.minimum(np.maximum.accumulate(cuts), len(self))
        return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]

    def close(self):
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def summary(self):
        n_img = self.n_images.astype(np.int64)
        counts = np.bincount(n_img, minlength=5)[1:]
        out = {
            "path": self.path, "kind": self.kind, "products": len(self), "images": int(n_img.sum()),
            "images_per_product": {str(k): int(c) for k, c in enumerate(counts, 1) if c},
            "bytes": int(self.records["length"].sum()), "problems": len(self.problems),
        }
        if self.kind == "train":
            out["categories"] = int(len(np.unique(self.category_ids)))
        return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bson", nargs="+", help="BSON file(s) to index")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report and skip bad documents instead of stopping at the first one")
    parser.add_argument("--kind", choices=KINDS, default="auto",
                        help="train requires category_id in every product (default: decided by the first one)")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached index")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for path in args.bson:
        if args.rebuild:
            index = BsonIndex.build(path, skip_bad=args.skip_bad, kind=args.kind, progress=True)
            index.save()
        else:
            index = BsonIndex.load_or_build(path, skip_bad=args.skip_bad, kind=args.kind, progress=True)
        print(json.dumps(index.summary(), indent=2))
        for problem in index.problems:
            print(f"skipped: {problem['path']}: offset {problem['offset']}, product {problem['product_id']}: "
                  f"{problem['reason']}")


if __name__ == "__main__":
    main()
