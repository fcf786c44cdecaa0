"""Offset index of a Kaggle BSON file: one sequential pass, then random access by position or id.

A Kaggle BSON file is a plain concatenation of documents, each starting with its int32
length. One pass over the file walks those length prefixes and reads the few header bytes
of each document (`_id`, `category_id`, where each picture of `imgs` lies) without decoding
or copying the JPEG bytes. The result is a compact numpy table (about 30 bytes a product
and 4 bytes an image, so the 7 M-product `train.bson` indexes into ~260 MB whatever its
58 GB) that is cached beside the file and gives random access (`os.pread`, safe across
`fork`) and byte-balanced ranges for parallel readers. It also holds what the conversion to
RecordIO needs to place every record before writing any: each picture's length and, for the
few pictures that hold them, the number of 4-byte-aligned RecordIO magic words (the pass
finds every occurrence of the magic word with numpy as it reads). Kaggle-layout documents
are parsed many at a time with numpy (`kaggle_layout`, also behind `locate_pictures`; one by
one `_kaggle_picture_spans` for `BsonIndex.pictures`), without decoding or copying the JPEG
bytes; other layouts are checked element by element and decoded with pymongo.

Bad input (a truncated last document, a length prefix that is negative, too small or runs
past the end of the file, bytes that are not BSON, a product without `imgs`, a negative
`_id`, a train product without `category_id`, a duplicate `_id`) raises `BsonFormatError`
naming file, offset and product. With `skip_bad=True` the problem is logged and recorded in
`index.problems` instead, and every good document around it is kept: after a broken
length prefix or a corrupt document the scanner re-synchronises on the next document start,
and the problem records the bytes skipped and the ids of every product lost in them (where
readable). A picture that will not decode (`data.jpeg`, checked as the pass reads it) is no
problem of the BSON file: the index records it (`picture_problems`) for the conversion.

    python -m data.bson_index train.bson            # build (or load) and summarise
"""
import argparse
import array
import json
import logging
import os
import struct

import numpy as np

from data.atomic import atomic_path, build_once
from data.cli import add_common_options, command
from data.errors import NPZ_ERRORS, BsonFormatError, StaleIndexError
from data.jpeg import jpeg_problems
from data.recordio import aligned_magic_words, magic_positions

log = logging.getLogger(__name__)

INDEX_VERSION = 3              # 2: picture lengths and magic words; 3: undecodable pictures, negative ids
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


# Byte patterns of the Kaggle layout, read as little-endian integers (see `locate_pictures`).
_ID_INT32 = np.uint64(int.from_bytes(b"\x10_id\x00", "little"))          # 5 bytes
_IMGS_ARRAY = np.uint64(int.from_bytes(b"\x04imgs\x00", "little"))       # 6 bytes
_CATEGORY_HEAD = np.uint64(int.from_bytes(b"\x10categor", "little"))    # 8 bytes of "\x10category_id\x00"
_CATEGORY_TAIL = np.uint64(int.from_bytes(b"y_id\x00", "little"))       # and its last 5
_PICTURE_HEAD = np.uint64(int.from_bytes(b"\x05picture", "little"))     # 8 bytes, then NUL
_MASK5, _MASK6 = np.uint64((1 << 40) - 1), np.uint64((1 << 48) - 1)
_CATEGORY_ELEMENT = b"\x10category_id\x00"
_MAX_FAST_IMAGES = 10       # array keys "0".."9": one character each
_DOC_HEAD = struct.Struct("<i5si")              # length, "\x10_id\x00", int32 _id
_IMAGE_HEAD = struct.Struct("<3si9sib")         # "\x03<digit>\x00", length, "\x05picture\x00", length, subtype
_IMAGE_KEYS = [bytes([0x03, 0x30 + k, 0]) for k in range(_MAX_FAST_IMAGES)]


def _kaggle_picture_spans(buf, start, length):
    """`(product_id, category_id, [(start, stop) of each picture's bytes])` of the document at
    buf[start:start+length] when it has a Kaggle layout, else None (the caller then decodes it).

    Kaggle layout: `_id` int32, then `imgs` (an array of `{picture: binary subtype 0}` under the
    keys "0".."9"), with an int32 `category_id` after `imgs`, before it, or absent. Every
    length, type byte, key and terminator is checked, so a document accepted here decodes
    (pymongo) to exactly these pictures; anything else returns None."""
    end = start + length - 1
    if length < 44 or end >= len(buf) or buf[end] != 0:
        return None
    doc_len, id_element, product_id = _DOC_HEAD.unpack_from(buf, start)
    if doc_len != length or id_element != b"\x10_id\x00":
        return None
    category_id = NO_CATEGORY
    imgs = start + 13
    if buf.startswith(_CATEGORY_ELEMENT, imgs):
        category_id = _INT32.unpack_from(buf, imgs + 13)[0]
        imgs += 17
    if not buf.startswith(b"\x04imgs\x00", imgs):
        return None
    array_end = imgs + 6 + _INT32.unpack_from(buf, imgs + 6)[0]     # one past the array's NUL
    if not imgs + 11 <= array_end <= end or buf[array_end - 1] != 0:
        return None
    if array_end != end:
        if category_id != NO_CATEGORY or array_end + 17 != end or not buf.startswith(_CATEGORY_ELEMENT, array_end):
            return None
        category_id = _INT32.unpack_from(buf, array_end + 13)[0]
    spans, pos, last = [], imgs + 10, array_end - 1
    while pos < last:
        number = len(spans)
        if number >= _MAX_FAST_IMAGES or pos + 22 > last:
            return None
        header, doc_len, key, picture_len, subtype = _IMAGE_HEAD.unpack_from(buf, pos)
        nxt = pos + 3 + doc_len
        if header != _IMAGE_KEYS[number] or key != b"\x05picture\x00" or subtype != 0 or picture_len < 0 \
                or doc_len != picture_len + 19 or nxt > last or buf[nxt - 1] != 0:
            return None
        spans.append((pos + 21, pos + 21 + picture_len))
        pos = nxt
    if pos != last or not spans:
        return None
    return product_id, category_id, spans


def kaggle_layout(buf, starts, lengths):
    """Parse many documents of one buffer at once, as `_kaggle_picture_spans` would (vectorised).

    Document `i` is buf[starts[i]:starts[i]+lengths[i]]. Returns `(ok, product_ids,
    category_ids, first, picture_starts, picture_lengths)`: `ok[i]` is True when document `i`
    has a Kaggle layout (same checks as `_kaggle_picture_spans`); its image `j` is then
    buf[picture_starts[r]:picture_starts[r] + picture_lengths[r]] with r = first[i] + j. A
    document that is not ok may still be valid BSON of another layout, or corrupt: decode it to
    know."""
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    n = len(starts)
    if len(buf) < 64 or not n:
        empty = np.zeros(0, np.int64)
        return np.zeros(n, bool), np.zeros(n, np.int64), np.full(n, NO_CATEGORY, np.int64), \
            np.zeros(n + 1, np.int64), empty, empty
    # Views reading a byte, an int32 or a uint64 at any byte position (stride 1, unaligned);
    # positions are clipped into the buffer, so a corrupt length only yields a failed check.
    u8 = np.frombuffer(buf, np.uint8)
    i32 = np.ndarray((len(buf) - 3,), "<i4", buf, 0, (1,))
    u64 = np.ndarray((len(buf) - 7,), "<u8", buf, 0, (1,))
    last = len(buf) - 8

    def at(view, pos):
        return view[np.maximum(np.minimum(pos, last), 0)]     # (np.take would copy the whole view)

    end = starts + lengths - 1
    ok = (lengths >= 44) & (starts >= 0) & (end < len(buf))
    ok &= (at(i32, starts) == lengths) & (at(u8, end) == 0)
    ok &= (at(u64, starts + 4) & _MASK5) == _ID_INT32
    product_ids = at(i32, starts + 9).astype(np.int64)
    category_first = (at(u64, starts + 13) == _CATEGORY_HEAD) & ((at(u64, starts + 21) & _MASK5) == _CATEGORY_TAIL)
    imgs = np.where(category_first, starts + 30, starts + 13)
    ok &= (at(u64, imgs) & _MASK6) == _IMGS_ARRAY
    array_end = imgs + 6 + at(i32, imgs + 6)
    ok &= (array_end >= imgs + 11) & (array_end <= end) & (at(u8, array_end - 1) == 0)
    category_last = ~category_first & (array_end + 17 == end) & (at(u64, array_end) == _CATEGORY_HEAD) \
        & ((at(u64, array_end + 8) & _MASK5) == _CATEGORY_TAIL)
    ok &= (array_end == end) | category_last
    category_ids = np.where(category_first, at(i32, starts + 26),
                            np.where(category_last, at(i32, array_end + 13), NO_CATEGORY)).astype(np.int64)
    pos = imgs + 10
    counts = np.zeros(n, np.int64)
    spans = np.zeros((n, _MAX_FAST_IMAGES, 2), np.int64)      # (start, length) of picture j of document i
    for number in range(_MAX_FAST_IMAGES):
        sel = np.flatnonzero(ok & (pos < array_end - 1))
        if not len(sel):
            break
        p = pos[sel]
        doc_len, picture_len = at(i32, p + 3), at(i32, p + 16)
        nxt = p + 3 + doc_len
        ok[sel] &= (at(u8, p) == 0x03) & (at(u8, p + 1) == 0x30 + number) & (at(u8, p + 2) == 0) \
            & (at(u64, p + 7) == _PICTURE_HEAD) & (at(u8, p + 15) == 0) & (at(u8, p + 20) == 0) \
            & (picture_len >= 0) & (doc_len == picture_len + 19) & (nxt <= array_end[sel] - 1) \
            & (at(u8, nxt - 1) == 0)
        spans[sel, number, 0] = p + 21
        spans[sel, number, 1] = picture_len
        counts[sel] += 1
        pos[sel] = nxt
    ok &= (pos == array_end - 1) & (counts >= 1)
    found = np.arange(_MAX_FAST_IMAGES) < counts[:, None]
    return ok, product_ids, category_ids, first_rows(counts), spans[found, 0], spans[found, 1]


def locate_pictures(buf, starts, lengths, product_ids, n_images, category_ids):
    """Where the pictures of many documents lie in one buffer, without decoding them (vectorised).

    Document `i` is buf[starts[i]:starts[i]+lengths[i]] and should be the product of index row
    (`product_ids[i]`, `n_images[i]`, `category_ids[i]`). Returns `(ok, first, picture_starts,
    picture_lengths)` as `kaggle_layout` does, with `ok[i]` also requiring that document `i`
    matches its index row."""
    ok, found_ids, found_categories, first, picture_starts, picture_lengths = kaggle_layout(buf, starts, lengths)
    ok &= (found_ids == np.asarray(product_ids)) & (np.diff(first) == np.asarray(n_images)) \
        & (found_categories == np.asarray(category_ids))
    return ok, first, picture_starts, picture_lengths


def _integer(buf, etype, value, key, product_id):
    """The int32 or int64 value of element `key`; any other BSON type is an error."""
    if etype == 0x10:
        return _INT32.unpack_from(buf, value)[0]
    if etype == 0x12:
        return _INT64.unpack_from(buf, value)[0]
    raise _BadDocument(f"{key} has BSON type 0x{etype:02x}, not an integer", product_id)


def _parse_document(buf, start, length):
    """(product_id, category_id, pictures) of the document at buf[start:start+length], one that
    `kaggle_layout` did not take: once its top-level elements are checked (bad ones raise
    `_BadDocument` with the reason), its pictures' bytes as pymongo decodes them."""
    end = start + length - 1
    if buf[end] != 0:
        raise _BadDocument("document does not end with NUL: not BSON")
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
    return product_id, category_id, _decoded_pictures(bytes(buf[start:start + length]), n_images, product_id)


def _decoded_pictures(raw, n_images, product_id):
    """The pictures of a checked non-Kaggle-layout document, as pymongo decodes them (what
    the conversion writes)."""
    import bson
    try:
        pictures = [bytes(img["picture"]) for img in bson.decode(raw)["imgs"]]
    except (bson.errors.BSONError, KeyError, TypeError) as e:
        raise _BadDocument(f"cannot decode the product: {e}", product_id) from None
    if len(pictures) != n_images:
        raise _BadDocument("imgs holds something other than pictures", product_id)
    return pictures


def _plausible_start(buf, pos, avail_end):
    """True when a document plausibly starts at `pos`: sane length, begins with an `_id`,
    and (when it lies wholly in the buffer) ends with NUL."""
    if pos < 0 or pos + 9 > avail_end:
        return False
    length = _INT32.unpack_from(buf, pos)[0]
    if not (MIN_DOC_LEN < length <= MAX_DOC_LEN) or buf[pos + 4:pos + 9] not in _ID_HEADERS:
        return False
    return pos + length > avail_end or buf[pos + length - 1] == 0


def _id_at(buf, start, avail_end):
    """The `_id` (int32 or int64) of a document starting at `start`, or None when no `_id`
    element follows its length prefix there or it does not lie in the buffer."""
    head = buf[start + 4:start + 9]
    if head == _ID_HEADERS[0] and start + 13 <= avail_end:
        return _INT32.unpack_from(buf, start + 9)[0]
    if head == _ID_HEADERS[1] and start + 17 <= avail_end:
        return _INT64.unpack_from(buf, start + 9)[0]
    return None


_EXAMINED = 17      # bytes from a document start that show its length prefix and `_id`


def _next_start(buf, pos, avail_end, passed, base):
    """Buffer position of the next plausible document start after `pos`, or None.

    `passed` ({file offset: `_id` or None}) receives the document starts passed over: `_id`
    elements whose document is not plausible (a damaged one), except those too close to
    `avail_end` to judge (the caller looks again once it has more bytes). `base` is the file
    offset of the buffer."""
    search = pos + 5
    while True:
        hits = [h for h in (buf.find(hdr, search, avail_end) for hdr in _ID_HEADERS) if h >= 0]
        if not hits:
            return None
        start = min(hits) - 4
        if _plausible_start(buf, start, avail_end):
            return start
        if start + _EXAMINED <= avail_end:
            passed[base + start] = _id_at(buf, start, avail_end)
        search = min(hits) + 1


class _Reader:
    """A sliding window over a file: `fill(n)` makes n bytes available after `pos`."""

    def __init__(self, f, file_size):
        self.f, self.file_size = f, file_size
        self.buf = bytearray(CHUNK_BYTES)
        self.view = memoryview(self.buf)
        self.base = self.filled = self.pos = 0
        self.magic = []       # file offsets where the RecordIO magic word starts (see `_LayoutRun`)
        self.scanned = 0      # every such offset below this one is in `magic`

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
        start = max(self.scanned, self.base) - self.base
        if self.filled - start >= 4:
            self.magic += (magic_positions(self.buf, start, self.filled) + self.base).tolist()
            self.scanned = self.base + self.filled - 3

    def resync(self, passed):
        """Move `pos` to the next plausible document start; False at end of file. `passed`
        receives the document starts passed over on the way (see `_next_start`)."""
        while True:
            nxt = _next_start(self.buf, self.pos, self.filled, passed, self.base)
            if nxt is not None:
                self.pos = nxt
                self.fill(MAX_DOC_LEN)   # so that the candidate's end can be checked
                if _plausible_start(self.buf, self.pos, self.filled):
                    return True
                passed[self.offset] = _id_at(self.buf, self.pos, self.filled)
                continue
            if self.at_eof:
                self.pos = self.filled
                return False
            # Keep the tail that `_next_start` could not judge: it is searched again, refilled.
            self.pos = max(self.pos, self.filled - _EXAMINED)
            self.fill(len(self.buf))


class PictureTable:
    """Per-image facts gathered by `scan_bson` for the conversion to RecordIO, which plans
    every record's place before reading a byte: the length of each picture (the bytes
    pymongo decodes); for the rare pictures that hold them, the number of 4-byte-aligned
    RecordIO magic words (each makes the record 4 bytes longer, see `data.recordio`); and for
    the rare pictures that will not decode, why (a `data.jpeg` problem code, checked as the
    pass reads them, so that the conversion needs no pass of its own to leave them out).
    Rows are images in document order."""

    def __init__(self):
        self.lengths = array.array("I")
        self.magic_rows, self.magic_counts = [], []
        self.bad_rows, self.bad_codes = [], []

    def add(self, lengths, magic, bad):
        """Add the pictures of one document: their lengths, and the (image number, count) of
        those that hold magic words and (image number, problem code) of those that will not
        decode."""
        row = len(self.lengths)
        self.lengths.extend(lengths)
        for number, count in magic:
            self.magic_rows.append(row + number)
            self.magic_counts.append(count)
        for number, code in bad:
            self.bad_rows.append(row + number)
            self.bad_codes.append(code)


def _picture_facts(pictures):
    """(lengths, [(image number, aligned magic words)], [(image number, JPEG problem code)])
    of a document's pictures (bytes)."""
    lengths = [len(p) for p in pictures]
    magic = [(k, aligned_magic_words(p)) for k, p in enumerate(pictures)]
    codes = jpeg_problems(b"".join(pictures), first_rows(lengths)[:-1], lengths)
    return lengths, [(k, n) for k, n in magic if n], [(int(k), int(codes[k])) for k in np.flatnonzero(codes)]


class _LayoutRun:
    """The documents that follow each other wholly inside the reader's buffer from `pos`,
    parsed at once (`kaggle_layout`): the scan takes a Kaggle-layout document from here,
    and decodes any other one on its own."""

    MAX_DOCS = 8192

    def __init__(self, r, pos):
        buf, starts, lengths = r.buf, [], []
        while pos + 4 <= r.filled and len(starts) < self.MAX_DOCS:
            length = _INT32.unpack_from(buf, pos)[0]
            if not MIN_DOC_LEN <= length <= MAX_DOC_LEN or pos + length > r.filled:
                break
            starts.append(pos)
            lengths.append(length)
            pos += length
        self.base, self.starts, self.next = r.base, starts, 0
        ok, ids, categories, first, picture_starts, picture_lengths = kaggle_layout(buf, starts, lengths)
        self.ok, self.product_ids, self.category_ids = ok.tolist(), ids.tolist(), categories.tolist()
        self.first, self.picture_lengths = first.tolist(), picture_lengths.tolist()
        self.magic = self._magic_words(r, picture_starts, picture_lengths, first)
        self.bad = self._undecodable(buf, picture_starts, picture_lengths, first)

    @staticmethod
    def _magic_words(r, picture_starts, picture_lengths, first):
        """{document: [(image number, aligned magic words)]} of the pictures that hold them."""
        if not len(picture_starts) or not r.magic:
            return {}
        hits = np.asarray(r.magic, np.int64) - r.base
        hits = hits[(hits >= picture_starts[0]) & (hits < picture_starts[-1] + picture_lengths[-1])]
        k = np.searchsorted(picture_starts, hits, side="right") - 1
        inside = (k >= 0) & (hits + 4 <= picture_starts[k] + picture_lengths[k]) & ((hits - picture_starts[k]) % 4 == 0)
        magic = {}
        for row, count in zip(*np.unique(k[inside], return_counts=True)):
            doc = int(np.searchsorted(first, row, side="right") - 1)
            magic.setdefault(doc, []).append((int(row - first[doc]), int(count)))
        return magic

    @staticmethod
    def _undecodable(buf, picture_starts, picture_lengths, first):
        """{document: [(image number, JPEG problem code)]} of the pictures that will not decode."""
        codes = jpeg_problems(buf, picture_starts, picture_lengths)
        bad = {}
        for row in np.flatnonzero(codes).tolist():
            doc = int(np.searchsorted(first, row, side="right") - 1)
            bad.setdefault(doc, []).append((row - int(first[doc]), int(codes[row])))
        return bad

    def at(self, r):
        """Index of the document at the reader's position, or None when this run does not hold it."""
        i = self.next
        if r.base != self.base or i >= len(self.starts):
            return None
        if self.starts[i] != r.pos:
            i += 1
            if i >= len(self.starts) or self.starts[i] != r.pos:
                return None
            self.next = i
        return i


def scan_bson(path, skip_bad=False, kind="auto", problems=None, with_bytes=False, pictures=None):
    """Stream the documents of a BSON file in one sequential pass.

    Yields `(offset, length, product_id, n_images, category_id)` per good document, plus
    the document's bytes (a memoryview valid until the next item) when `with_bytes`; a
    `PictureTable` given as `pictures` receives the pictures of the yielded documents.
    `kind` "train" requires `category_id` in every product; "auto" decides from the first
    good document. A negative `_id` is bad input: RecordIO headers, where the conversion
    writes product ids, hold them as unsigned 64-bit integers. Problems raise
    `BsonFormatError`, or with `skip_bad` are appended to `problems` (dicts: see `_problem`,
    with the bytes skipped and the products lost in them) and skipped; duplicate ids are
    checked by `BsonIndex.build`.

    After a broken length prefix or a corrupt document the scan re-synchronises on the next
    plausible document start (sane length, an `_id` element, a NUL at its end), searching
    from the broken document's start, so that documents its (wrong) length would cover are
    kept; every `_id` element passed over belongs to a damaged document and is counted lost.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    problems = [] if problems is None else problems

    def report(offset, product_id, reason, end, lost=()):
        """Raise the problem, or with `skip_bad` log and record it with the bytes [offset, end)
        it cost and the ids of the products lost in them."""
        err = BsonFormatError(path, offset, product_id, reason)
        if not skip_bad:
            raise err
        log.warning("skipping: %s", err)
        problems.append(_problem(err, end, [product_id, *lost]))

    def skip_damage(offset, product_id, reason):
        """Report a damaged region, from `offset` to the next plausible document start, and
        move there; False at the end of the file. The product is the damaged document's own
        `_id` when still readable."""
        product_id = _id_at(r.buf, r.pos, r.filled) if product_id is None else product_id
        if not skip_bad:
            raise BsonFormatError(path, offset, product_id, reason)
        passed = {}
        found = r.resync(passed)
        lost = list(dict.fromkeys(i for i in [product_id, *passed.values()] if i is not None))
        report(offset, product_id, f"{reason}; {_damage_text(offset, r.offset, lost)}", r.offset, lost)
        return found

    with open(path, "rb", buffering=0) as f:
        r = _Reader(f, os.fstat(f.fileno()).st_size)
        buf = r.buf
        run = None
        while True:
            r.fill(13)   # length prefix and an int32 `_id` element
            pos, offset = r.pos, r.offset
            if pos >= r.filled:
                return
            if r.filled - pos < 4:
                report(offset, None, f"truncated document: {r.filled - pos} trailing bytes, no length prefix",
                       r.file_size)
                return
            length = _INT32.unpack_from(buf, pos)[0]
            if MIN_DOC_LEN <= length <= MAX_DOC_LEN:
                r.fill(length)
                pos = r.pos
            i = run.at(r) if run is not None else None
            if i is None and MIN_DOC_LEN <= length <= MAX_DOC_LEN and pos + length <= r.filled:
                run = _LayoutRun(r, pos)
                i = run.at(r)
            if i is not None and run.ok[i]:        # the common case: a Kaggle-layout document
                product_id, category_id = run.product_ids[i], run.category_ids[i]
                a, b = run.first[i], run.first[i + 1]
                n_images, facts = b - a, (run.picture_lengths[a:b], run.magic.get(i, ()), run.bad.get(i, ()))
                run.next = i + 1
            else:
                if length < MIN_DOC_LEN or length > MAX_DOC_LEN or offset + length > r.file_size:
                    if length < 0:
                        reason = f"invalid length prefix: negative document length {length}"
                    elif length < MIN_DOC_LEN:
                        reason = f"invalid length prefix: document length {length} is too small"
                    elif length > MAX_DOC_LEN:
                        reason = f"invalid length prefix: document length {length} exceeds the 16 MiB BSON limit"
                    else:
                        reason = (f"truncated document: length {length} runs past the end of the file "
                                  f"({r.file_size - offset} bytes left)")
                    if not skip_damage(offset, None, reason):
                        return
                    continue
                try:
                    product_id, category_id, found = _parse_document(buf, pos, length)
                except _BadDocument as e:
                    if not skip_damage(offset, e.product_id, e.reason):
                        return
                    continue
                n_images, facts = len(found), (_picture_facts(found) if pictures is not None else None)
            if product_id < 0:
                reason = "negative _id: product ids must be at least 0 (RecordIO headers hold them unsigned)"
            else:
                if kind == "auto":
                    kind = "train" if category_id != NO_CATEGORY else "test"
                reason = "train product without category_id" if kind == "train" and category_id == NO_CATEGORY \
                    else None
            if reason is not None:
                report(offset, product_id, reason, offset + length)
                r.pos = pos + length
                continue
            if pictures is not None:
                pictures.add(*facts)
            if with_bytes:
                yield offset, length, product_id, n_images, category_id, r.view[pos:pos + length]
            else:
                yield offset, length, product_id, n_images, category_id
            r.pos = pos + length


def _drop_duplicates(path, records, skip_bad, problems):
    """Mask of the records to keep: the first document of each `_id`; later ones are errors
    (or skipped)."""
    ids = records["product_id"]
    _, first = np.unique(ids, return_index=True)
    if len(first) == len(ids):
        return np.ones(len(ids), bool)
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
        problems.append(_problem(err, int(row["offset"]) + int(row["length"]), [pid]))
    return keep


def _problem(err, end, lost_ids):
    """What the index records of a skipped problem: the error's fields (path, offset,
    product_id, reason), `end`, where the bytes it skipped end, and `lost_product_ids`,
    the ids (where readable) of the products lost in them."""
    return dict(err.as_dict(), end=end, lost_product_ids=list(dict.fromkeys(i for i in lost_ids if i is not None)))


def _damage_text(offset, end, lost_ids):
    """What a damaged region cost, for its error message."""
    ids = f"lost product ids {', '.join(map(str, lost_ids))}" if lost_ids else "no product id readable in them"
    return f"skipped bytes {offset}..{end} ({end - offset:,} bytes; {ids})"


def first_rows(counts):
    """(len(counts) + 1,) int64 cumulative sum from 0: the items of group i are rows
    first[i]:first[i+1] of a table of all groups' items (e.g. images of products)."""
    first = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    return first


def image_rows(first_image, positions):
    """Rows of the images of the products at `positions` (in that order), given the first row
    of each product's images (`BsonIndex.first_image`)."""
    positions = np.asarray(positions, np.int64)
    counts = first_image[positions + 1] - first_image[positions]
    before = np.zeros(len(positions), np.int64)
    np.cumsum(counts[:-1], out=before[1:])
    return np.repeat(first_image[positions] - before, counts) + np.arange(int(counts.sum()))


def _sparse_lookup(sparse_rows, values, rows):
    """The values at `rows` of a mostly-zero per-image column held as its non-zero
    (ascending `sparse_rows`, `values`)."""
    rows = np.asarray(rows, np.int64)
    out = np.zeros(len(rows), values.dtype)
    if len(sparse_rows) and len(rows):
        k = np.minimum(np.searchsorted(sparse_rows, rows), len(sparse_rows) - 1)
        hit = sparse_rows[k] == rows
        out[hit] = values[k[hit]]
    return out


def index_path_for(path):
    return path + ".index.npz"


def _file_signature(path):
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class BsonIndex:
    """Positions of every good product of a BSON file, in file order, with random access,
    and the length of every picture (`picture_lengths`; image `j` of the product at
    position `p` is row `first_image[p] + j`) with the RecordIO magic words some hold
    (`picture_magic`), from which the conversion to RecordIO knows every record's size, and
    the pictures that will not decode (`picture_problems`, `data.jpeg` codes), which the
    conversion leaves out or reports."""

    def __init__(self, path, records, kind, problems=(), picture_lengths=None, magic_rows=None, magic_counts=None,
                 undecodable_rows=None, undecodable_codes=None, built_as=None):
        self.path = path
        self.records = records
        self.kind = kind
        self.built_as = kind if built_as is None else built_as   # the `kind` asked of `build` (see `serves`)
        self.problems = list(problems)
        self.picture_lengths = picture_lengths
        self.magic_rows = np.zeros(0, np.int64) if magic_rows is None else magic_rows
        self.magic_counts = np.zeros(0, np.int64) if magic_counts is None else magic_counts
        self.undecodable_rows = np.zeros(0, np.int64) if undecodable_rows is None else undecodable_rows
        self.undecodable_codes = np.zeros(0, np.uint8) if undecodable_codes is None else undecodable_codes
        self._fd = None
        self._fd_pid = None
        self._positions = None
        self._first_image = None

    # -- building, saving, loading -------------------------------------------------------
    @classmethod
    def build(cls, path, skip_bad=False, kind="auto", progress=False):
        """Index `path` in one sequential pass (see `scan_bson`)."""
        problems, blocks, rows = [], [], []
        pictures = PictureTable()
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=f"index {os.path.basename(path)}")
        done = 0
        for row in scan_bson(path, skip_bad=skip_bad, kind=kind, problems=problems, pictures=pictures):
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
        lengths = np.frombuffer(pictures.lengths, np.uint32) if len(pictures.lengths) else np.zeros(0, np.uint32)
        sparse = [(np.array(pictures.magic_rows, np.int64), np.array(pictures.magic_counts, np.int64)),
                  (np.array(pictures.bad_rows, np.int64), np.array(pictures.bad_codes, np.uint8))]
        first_category = records["category_id"][0] if len(records) else NO_CATEGORY
        keep = _drop_duplicates(path, records, skip_bad, problems)
        if not keep.all():
            keep_images = np.repeat(keep, records["n_images"].astype(np.int64))
            new_rows = np.cumsum(keep_images) - 1
            records, lengths = records[keep], lengths[keep_images]
            sparse = [(new_rows[rows[keep_images[rows]]], values[keep_images[rows]]) for rows, values in sparse]
        resolved = kind if kind != "auto" else "test" if first_category == NO_CATEGORY else "train"
        (magic_rows, magic_counts), (undecodable_rows, undecodable_codes) = sparse
        return cls(path, records, resolved, problems, lengths.copy(), magic_rows, magic_counts, undecodable_rows,
                   undecodable_codes, built_as=kind)

    def save(self, index_path=None):
        index_path = index_path or index_path_for(self.path)
        meta = dict(_file_signature(self.path), version=INDEX_VERSION, kind=self.kind, built_as=self.built_as,
                    problems=self.problems)
        with atomic_path(index_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, records=self.records, picture_lengths=self.picture_lengths, magic_rows=self.magic_rows,
                         magic_counts=self.magic_counts, undecodable_rows=self.undecodable_rows,
                         undecodable_codes=self.undecodable_codes,
                         meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return index_path

    @classmethod
    def load(cls, path, index_path=None):
        """The cached index of `path`, or None when absent, stale (file changed) or damaged."""
        index_path = index_path or index_path_for(path)
        if not os.path.exists(index_path):
            return None
        try:
            with np.load(index_path) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("version") != INDEX_VERSION or \
                        {k: meta.get(k) for k in ("size", "mtime_ns")} != _file_signature(path):
                    return None
                return cls(path, z["records"], meta["kind"], meta["problems"], z["picture_lengths"],
                           z["magic_rows"], z["magic_counts"], z["undecodable_rows"], z["undecodable_codes"],
                           meta["built_as"])
        except NPZ_ERRORS as e:   # damaged: build it again
            log.warning("ignoring the unreadable index %s: %s", index_path, e)
            return None

    @classmethod
    def load_or_build(cls, path, skip_bad=False, kind="auto", progress=False, index_path=None, rebuild=False):
        """The cached index when valid (and not `rebuild`), else build it and cache it beside
        the file. One process builds at a time: another that needs the index meanwhile (the
        conversions of several sides of one train.bson started together) waits, then loads
        what was built (`data.atomic.build_once`).

        A cached index that recorded problems is only reused with `skip_bad` (without it,
        the build runs again so that the first problem raises)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such BSON file")

        def cached():
            index = None if rebuild else cls.load(path, index_path)
            return index if index is not None and (skip_bad or not index.problems) and \
                index.serves(kind) else None

        def build():
            index = cls.build(path, skip_bad=skip_bad, kind=kind, progress=progress)
            try:
                index.save(index_path)
            except OSError as e:   # a read-only data folder: the index still works, uncached
                log.warning("could not cache the index of %s: %s", path, e)
            return index

        return build_once(index_path or index_path_for(path), cached, build)

    def serves(self, kind):
        """Whether this index is what `build(kind=kind)` would give: one built with "auto" serves
        "auto" and the kind it resolved to; one built with a forced kind serves only that kind
        (a `--kind test` index of a train file must not pass for an automatic one)."""
        return kind == self.built_as or (self.built_as == "auto" and kind == self.kind)

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
    def labelled(self):
        """True when products carry category ids (a training file), whatever `kind` the index
        was built as (`--kind test` keeps the category ids of a train file)."""
        return bool(np.any(self.category_ids != NO_CATEGORY))

    @property
    def n_images(self):
        return self.records["n_images"]

    @property
    def first_image(self):
        """(n_products + 1,) int64: the images of the product at position p are rows
        first_image[p]:first_image[p+1] of a per-image table in index order."""
        if self._first_image is None:
            self._first_image = first_rows(self.n_images)
        return self._first_image

    def image_rows(self, positions):
        """Rows (per `first_image`) of the images of the products at `positions`, in that order."""
        return image_rows(self.first_image, positions)

    def picture_magic(self, rows):
        """Aligned RecordIO magic words in the pictures of image `rows` (int64, mostly 0)."""
        return _sparse_lookup(self.magic_rows, self.magic_counts, rows)

    def picture_problems(self, rows):
        """`data.jpeg` problem codes of the pictures of image `rows` (uint8, 0 = decodable)."""
        return _sparse_lookup(self.undecodable_rows, self.undecodable_codes, rows)

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
            raise StaleIndexError(self.path, offset, product_id, "file is shorter than its index")
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

    def read_into(self, positions, buffer):
        """Read the documents at `positions` one after another into `buffer` (writable, at least
        their total length), with one `pread` per run of documents that follow each other in
        the file; returns the int64 start of each document in `buffer`.

        A file shorter than its index raises `BsonFormatError` (naming the run's first product)."""
        offsets, lengths, bounds = self._runs(positions)
        starts = first_rows(lengths)
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
                    raise StaleIndexError(self.path, offset, int(self.records["product_id"][positions[a]]),
                                          "file is shorter than its index")
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
                raise StaleIndexError(self.path, offset, product_id, f"cannot decode the product: {e}") from None
            found_id, found_category = doc.get("_id"), doc.get("category_id", NO_CATEGORY)
        if found_id != product_id or len(pictures) != n_images or found_category != category_id:
            raise StaleIndexError(self.path, offset, product_id,
                                  "document differs from its index entry")
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
                raise StaleIndexError(self.path, begin, int(self.records["product_id"][i]),
                                      "file is shorter than its index")
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
            "undecodable_pictures": len(self.undecodable_rows),
        }
        if self.kind == "train":
            out["categories"] = int(len(np.unique(self.category_ids)))
        return out


@command("bson_index")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="bson_index", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bson", nargs="+", help="BSON file(s) to index")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report and skip bad documents instead of stopping at the first one")
    parser.add_argument("--kind", choices=KINDS, default="auto",
                        help="train requires category_id in every product (default: decided by the first one)")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached index")
    add_common_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for path in args.bson:
        index = BsonIndex.load_or_build(path, skip_bad=args.skip_bad, kind=args.kind, progress=args.progress,
                                        rebuild=args.rebuild)
        print(json.dumps(index.summary(), indent=2))
        for problem in index.problems:
            print(f"skipped: {problem['path']}: offset {problem['offset']}, product {problem['product_id']}: "
                  f"{problem['reason']}")


if __name__ == "__main__":
    main()
