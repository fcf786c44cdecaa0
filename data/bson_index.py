"""Offset index of a Kaggle BSON file: one sequential pass, then random access by position or id.

A Kaggle BSON file is a plain concatenation of documents, each starting with its int32
length. One pass over the file walks those length prefixes and reads the few header bytes
of each document (`_id`, the number of `imgs`, `category_id`) without decoding or copying
the JPEG bytes. The result is a compact numpy table (about 30 bytes a product, so the
7 M-product `train.bson` indexes into ~200 MB whatever its 58 GB) that is cached beside the
file and gives random access (`os.pread`, safe across `fork`) and byte-balanced ranges for
parallel readers. `locate_pictures` (many documents at once, numpy) and `BsonIndex.pictures`
find the JPEG bytes inside Kaggle-layout documents by the same kind of structural walk,
without decoding the documents; other layouts are decoded with pymongo.

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
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)   # preadv flag: read only what the page cache holds
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


# Byte patterns of the Kaggle layout, read as little-endian integers (see `locate_pictures`).
_ID_INT32 = np.uint64(int.from_bytes(b"\x10_id\x00", "little"))          # 5 bytes
_IMGS_ARRAY = np.uint64(int.from_bytes(b"\x04imgs\x00", "little"))       # 6 bytes
_CATEGORY_HEAD = np.uint64(int.from_bytes(b"\x10categor", "little"))    # 8 bytes of "\x10category_id\x00"
_CATEGORY_TAIL = np.uint64(int.from_bytes(b"y_id\x00", "little"))       # and its last 5
_PICTURE_HEAD = np.uint64(int.from_bytes(b"\x05picture", "little"))     # 8 bytes, then NUL
_MASK5, _MASK6 = np.uint64((1 << 40) - 1), np.uint64((1 << 48) - 1)
_CATEGORY_ELEMENT = b"\x10category_id\x00"
_MAX_FAST_IMAGES = 10       # array keys "0".."9": one character each


def _kaggle_picture_spans(buf, start, length):
    """`(product_id, category_id, [(start, stop) of each picture's bytes])` of the document at
    buf[start:start+length] when it has a Kaggle layout, else None (the caller then decodes it).

    Kaggle layout: `_id` int32, then `imgs` (an array of `{picture: binary subtype 0}` under the
    keys "0".."9"), with an int32 `category_id` after `imgs`, before it, or absent. Every
    length, type byte, key and terminator is checked, so a document accepted here decodes
    (pymongo) to exactly these pictures; anything else returns None."""
    end = start + length - 1
    if length < 44 or end >= len(buf) or buf[end] != 0 or _INT32.unpack_from(buf, start)[0] != length \
            or buf[start + 4:start + 9] != b"\x10_id\x00":
        return None
    category_id = NO_CATEGORY
    imgs = start + 13
    if buf[imgs:imgs + 13] == _CATEGORY_ELEMENT:
        category_id = _INT32.unpack_from(buf, imgs + 13)[0]
        imgs += 17
    if buf[imgs:imgs + 6] != b"\x04imgs\x00":
        return None
    array_end = imgs + 6 + _INT32.unpack_from(buf, imgs + 6)[0]     # one past the array's NUL
    if not imgs + 11 <= array_end <= end or buf[array_end - 1] != 0:
        return None
    if array_end != end:
        if category_id != NO_CATEGORY or array_end + 17 != end \
                or buf[array_end:array_end + 13] != _CATEGORY_ELEMENT:
            return None
        category_id = _INT32.unpack_from(buf, array_end + 13)[0]
    spans, pos = [], imgs + 10
    while pos < array_end - 1:
        number = len(spans)
        if number >= _MAX_FAST_IMAGES or pos + 22 > array_end - 1 or buf[pos] != 0x03 \
                or buf[pos + 1] != 0x30 + number or buf[pos + 2] != 0 \
                or buf[pos + 7:pos + 16] != b"\x05picture\x00" or buf[pos + 20] != 0:
            return None
        doc_len, picture_len = _INT32.unpack_from(buf, pos + 3)[0], _INT32.unpack_from(buf, pos + 16)[0]
        nxt = pos + 3 + doc_len
        if picture_len < 0 or doc_len != picture_len + 19 or nxt > array_end - 1 or buf[nxt - 1] != 0:
            return None
        spans.append((pos + 21, pos + 21 + picture_len))
        pos = nxt
    if pos != array_end - 1 or not spans:
        return None
    return _INT32.unpack_from(buf, start + 9)[0], category_id, spans


def locate_pictures(buf, starts, lengths, product_ids, n_images, category_ids):
    """Where the pictures of many documents lie in one buffer, without decoding them (vectorised).

    Document `i` is buf[starts[i]:starts[i]+lengths[i]] and should be the product of index row
    (`product_ids[i]`, `n_images[i]`, `category_ids[i]`). Returns `(ok, first, picture_starts,
    picture_lengths)`: `ok[i]` is True when document `i` has a Kaggle layout (see
    `_kaggle_picture_spans`, same checks) and matches its index row; its image `j` is then
    buf[picture_starts[r]:picture_starts[r] + picture_lengths[r]] with r = first[i] + j. A
    document that is not ok may still be valid BSON of another layout, or corrupt: decode it
    (`BsonIndex.pictures`) to know."""
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    n_images = np.asarray(n_images, np.int64)
    first = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(n_images, out=first[1:])
    picture_starts = np.zeros(first[-1], np.int64)
    picture_lengths = np.zeros(first[-1], np.int64)
    if len(buf) < 64 or not len(starts):
        return np.zeros(len(starts), bool), first, picture_starts, picture_lengths
    # Views reading a byte, an int32 or a uint64 at any byte position (stride 1, unaligned);
    # positions are clipped into the buffer, so a corrupt length only yields a failed check.
    u8 = np.frombuffer(buf, np.uint8)
    i32 = np.ndarray((len(buf) - 3,), "<i4", buf, 0, (1,))
    u64 = np.ndarray((len(buf) - 7,), "<u8", buf, 0, (1,))
    last = len(buf) - 8

    def at(view, pos):
        return view[np.maximum(np.minimum(pos, last), 0)]     # (np.take would copy the whole view)

    end = starts + lengths - 1
    ok = (lengths >= 44) & (starts >= 0) & (end < len(buf)) & (n_images >= 1) & (n_images <= _MAX_FAST_IMAGES)
    ok &= (at(i32, starts) == lengths) & (at(u8, end) == 0)
    ok &= ((at(u64, starts + 4) & _MASK5) == _ID_INT32) & (at(i32, starts + 9) == product_ids)
    category_first = (at(u64, starts + 13) == _CATEGORY_HEAD) & ((at(u64, starts + 21) & _MASK5) == _CATEGORY_TAIL)
    imgs = np.where(category_first, starts + 30, starts + 13)
    ok &= (at(u64, imgs) & _MASK6) == _IMGS_ARRAY
    array_end = imgs + 6 + at(i32, imgs + 6)
    ok &= (array_end >= imgs + 11) & (array_end <= end) & (at(u8, array_end - 1) == 0)
    category_last = ~category_first & (array_end + 17 == end) & (at(u64, array_end) == _CATEGORY_HEAD) \
        & ((at(u64, array_end + 8) & _MASK5) == _CATEGORY_TAIL)
    ok &= (array_end == end) | category_last
    category = np.where(category_first, at(i32, starts + 26),
                        np.where(category_last, at(i32, array_end + 13), NO_CATEGORY))
    ok &= category == category_ids
    pos = imgs + 10
    for number in range(min(int(n_images.max()), _MAX_FAST_IMAGES)):
        sel = np.flatnonzero(n_images > number)
        p = pos[sel]
        doc_len, picture_len = at(i32, p + 3), at(i32, p + 16)
        nxt = p + 3 + doc_len
        ok[sel] &= (at(u8, p) == 0x03) & (at(u8, p + 1) == 0x30 + number) & (at(u8, p + 2) == 0) \
            & (at(u64, p + 7) == _PICTURE_HEAD) & (at(u8, p + 15) == 0) & (at(u8, p + 20) == 0) \
            & (picture_len >= 0) & (doc_len == picture_len + 19) & (nxt <= array_end[sel] - 1) \
            & (at(u8, nxt - 1) == 0)
        rows = first[sel] + number
        picture_starts[rows] = p + 21
        picture_lengths[rows] = picture_len
        pos[sel] = nxt
    ok &= pos == array_end - 1
    return ok, first, picture_starts, picture_lengths


def _integer(buf, etype, value, key, product_id):
    """The int32 or int64 value of element `key`; any other BSON type is an error."""
    if etype == 0x10:
        return _INT32.unpack_from(buf, value)[0]
    if etype == 0x12:
        return _INT64.unpack_from(buf, value)[0]
    raise _BadDocument(f"{key} has BSON type 0x{etype:02x}, not an integer", product_id)


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
                product_id = _integer(buf, etype, value, "_id", product_id)
            elif key == b"imgs":
                if etype != 0x04:
                    raise _BadDocument("imgs is not an array", product_id)
                n_images = _count_images(buf, value, pos)
            elif key == b"category_id":
                category_id = _integer(buf, etype, value, "category_id", product_id)
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

    def _runs(self, positions):
        """(offsets, lengths, bounds) of the documents at `positions`: runs[k] = positions
        bounds[k]:bounds[k+1] lie one after another in the file (one read covers them)."""
        rows = self.records[positions]
        offsets, lengths = rows["offset"], rows["length"].astype(np.int64)
        breaks = np.flatnonzero(offsets[1:] != offsets[:-1] + lengths[:-1]) + 1
        return offsets, lengths, [0, *breaks.tolist(), len(rows)]

    def prefetch(self, positions):
        """Ask the kernel to start reading the products at `positions` (posix_fadvise WILLNEED).

        Random reads of a file that is not in the page cache wait for the disk one at a time;
        announcing the next few dozen products keeps many reads in flight (several times
        faster on an SSD). Products that follow each other in the file are announced as one
        range. No-op where posix_fadvise does not exist."""
        if not hasattr(os, "posix_fadvise") or not len(positions):
            return
        fd = self._file()
        offsets, lengths, bounds = self._runs(positions)
        ends = (offsets + lengths).tolist()
        offsets = offsets.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            os.posix_fadvise(fd, offsets[a], ends[b - 1] - offsets[a], os.POSIX_FADV_WILLNEED)

    def cached(self, positions, sample=16):
        """Whether the documents at `positions` look cached: True when the first byte of each
        of up to `sample` of them, spread over `positions`, is in the page cache (a one-byte
        `RWF_NOWAIT` read; on a miss the kernel starts reading that page, as `prefetch` would).
        False where `RWF_NOWAIT` does not exist."""
        if not _NOWAIT or not len(positions):
            return False
        fd, probe = self._file(), bytearray(1)
        picks = np.unique(np.linspace(0, len(positions) - 1, min(sample, len(positions))).astype(np.int64))
        for offset in self.records["offset"][np.asarray(positions)[picks]].tolist():
            try:
                if os.preadv(fd, [probe], offset, _NOWAIT) != 1:
                    return False
            except BlockingIOError:
                return False
        return True

    def read_into(self, positions, buffer):
        """Read the documents at `positions` one after another into `buffer` (writable, at least
        their total length), with one `pread` per run of documents that follow each other in
        the file; returns the int64 start of each document in `buffer`.

        A file shorter than its index raises `BsonFormatError` (naming the run's first product)."""
        offsets, lengths, bounds = self._runs(positions)
        starts = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        if starts[-1] > len(buffer):
            raise ValueError(f"buffer of {len(buffer)} bytes for {starts[-1]} bytes of documents")
        fd, view = self._file(), memoryview(buffer)
        begins, offsets = starts.tolist(), offsets.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            begin, end, offset = begins[a], begins[b], offsets[a]
            done = 0
            while done < end - begin:
                n = os.preadv(fd, [view[begin + done:end]], offset + done)
                if not n:
                    raise BsonFormatError(self.path, offset, int(self.records["product_id"][positions[a]]),
                                          "file is shorter than its index: was it modified?")
                done += n
        return starts[:-1]

    def read(self, pos):
        """The decoded document (pymongo's `bson.decode`) at position `pos`."""
        import bson
        return bson.decode(self.read_raw(pos))

    def get(self, product_id):
        return self.read(self.position_of(product_id))

    def pictures(self, pos, raw=None):
        """The JPEG bytes of each image of the product at `pos`, in `imgs` order.

        `raw` is the document's bytes when already read (e.g. from `iter_raw`). A Kaggle-layout
        document is sliced without decoding (`_kaggle_picture_spans`), any other decoded with
        pymongo. A document that no longer matches its index entry (the file changed) raises
        `BsonFormatError`."""
        offset, length, product_id, n_images, category_id = self.records.item(pos)   # one cheap row fetch
        if raw is None:
            raw = self._pread(offset, length, product_id)
        fast = _kaggle_picture_spans(raw, 0, length) if len(raw) == length else None
        if fast is not None:
            found_id, found_category, spans = fast
            pictures = [bytes(raw[a:b]) for a, b in spans]
        else:
            import bson
            try:
                doc = bson.decode(raw)
                pictures = [img["picture"] for img in doc["imgs"]]
            except (bson.errors.BSONError, KeyError, TypeError) as e:
                raise BsonFormatError(self.path, offset, product_id, f"cannot decode the product: {e}") from None
            found_id, found_category = doc.get("_id"), doc.get("category_id", NO_CATEGORY)
        if found_id != product_id or len(pictures) != n_images or found_category != category_id:
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
