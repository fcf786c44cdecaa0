"""One sequential pass over a BSON file: every good document, with what the index and the
conversion need to know of it, bad input located and (with `skip_bad`) skipped.

The pass walks the documents' length prefixes through a sliding 64 MB window (`_Reader`).
Documents that lie wholly in the window are parsed many at a time with numpy
(`_LayoutRun`: `data.bson_layout.kaggle_layout`); any other one is checked element by element
and decoded with pymongo (`data.bson_layout.parse_document`). The pictures are located, not
decoded or copied: a `PictureTable` given to the pass receives each picture's length and the
per-picture facts it holds.

Bad input (a truncated last document, a length prefix that is negative, too small or runs
past the end of the file, bytes that are not BSON, a product without `imgs`, a negative
`_id`, a train product without `category_id`) raises `BsonFormatError` naming file, offset
and product. With `skip_bad=True` the problem is logged and recorded instead, and every good
document around it is kept: after a broken length prefix or a corrupt document the scanner
re-synchronises on the next document start, and the problem records the bytes skipped and
the ids of every product lost in them (where readable).
"""
import array
import dataclasses
import logging
import os
from typing import Callable

import numpy as np

from data.bson_layout import (AFTER_ID, ID, ID64, INT32, INT64, LENGTH_PREFIX, MAX_DOC_LEN, MIN_DOC_LEN,
                              NO_CATEGORY, BadDocument, kaggle_layout, parse_document)
from data.errors import BsonFormatError, SkipBad

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024 * 1024
KINDS = ("auto", "train", "test")
# The two ways a document can start: `_id` as int32 (Kaggle's) or as int64.
_ID_HEADERS = (ID.header, ID64.header)


def _plausible_start(buf, pos, avail_end):
    """True when a document plausibly starts at `pos`: sane length, begins with an `_id`,
    and (when it lies wholly in the buffer) ends with NUL."""
    if pos < 0 or pos + LENGTH_PREFIX + len(ID.header) > avail_end:
        return False
    length = INT32.unpack_from(buf, pos)[0]
    if not (MIN_DOC_LEN < length <= MAX_DOC_LEN) or buf[pos + LENGTH_PREFIX:pos + LENGTH_PREFIX + len(ID.header)] not in _ID_HEADERS:
        return False
    return pos + length > avail_end or buf[pos + length - 1] == 0


def _id_at(buf, start, avail_end):
    """The `_id` (int32 or int64) of a document starting at `start`, or None when no `_id`
    element follows its length prefix there or it does not lie in the buffer."""
    head, value = buf[start + LENGTH_PREFIX:start + LENGTH_PREFIX + len(ID.header)], start + LENGTH_PREFIX + ID.value
    if head == ID.header and start + LENGTH_PREFIX + ID.size <= avail_end:
        return INT32.unpack_from(buf, value)[0]
    if head == ID64.header and start + LENGTH_PREFIX + ID64.size <= avail_end:
        return INT64.unpack_from(buf, value)[0]
    return None


_EXAMINED = LENGTH_PREFIX + ID64.size      # bytes from a document start that show its length prefix and `_id`


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
        start = min(hits) - LENGTH_PREFIX
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


@dataclasses.dataclass(frozen=True)
class PictureFact:
    """A number per picture that a later stage needs, gathered by the index pass as it reads
    each picture (so it costs no pass of its own) and kept as a sparse column named `name`
    (mostly 0). `located(buf, starts, lengths)` gives it for pictures lying in a buffer (many
    documents of Kaggle's layout at once; ascending, apart), `decoded(pictures)` for the
    pictures of a document pymongo decoded (bytes); both one value per picture, as an array.
    `summary_key`, when set, names the count of non-zero pictures in the index's summary."""
    name: str
    dtype: type
    located: Callable
    decoded: Callable
    summary_key: str = None


class PictureTable:
    """Per-image facts gathered by `scan_bson`, rows in document order: the length of each
    picture (the bytes pymongo decodes) and, for each `PictureFact` of `facts`, the (row,
    value) of the pictures where it is not 0."""

    def __init__(self, facts=()):
        self.facts = tuple(facts)
        self.lengths = array.array("I")
        self.sparse = [([], []) for _ in self.facts]

    def add(self, lengths, fact_values):
        """Add the pictures of one document: their lengths and, for each fact, the (image
        number, value) of the pictures where it is not 0."""
        row = len(self.lengths)
        self.lengths.extend(lengths)
        for (rows, values), found in zip(self.sparse, fact_values):
            for number, value in found:
                rows.append(row + number)
                values.append(value)


def _non_zero(values, first):
    """{document: [(image number, value)]} of the pictures (rows of `values`, the pictures of
    document d being rows first[d]:first[d+1]) whose value is not 0."""
    found = {}
    for row in np.flatnonzero(values).tolist():
        doc = int(np.searchsorted(first, row, side="right") - 1)
        found.setdefault(doc, []).append((row - int(first[doc]), values[row].item()))
    return found


def _decoded_facts(pictures, facts):
    """(lengths, for each fact [(image number, value) where not 0]) of a document's pictures."""
    return [len(p) for p in pictures], [_non_zero(fact.decoded(pictures), [0, len(pictures)]).get(0, ())
                                        for fact in facts]


class _LayoutRun:
    """The documents that follow each other wholly inside the reader's buffer from `pos`,
    parsed at once (`kaggle_layout`): the scan takes a Kaggle-layout document from here,
    and decodes any other one on its own."""

    MAX_DOCS = 8192

    def __init__(self, r, pos, facts):
        buf, starts, lengths = r.buf, [], []
        while pos + LENGTH_PREFIX <= r.filled and len(starts) < self.MAX_DOCS:
            length = INT32.unpack_from(buf, pos)[0]
            if not MIN_DOC_LEN <= length <= MAX_DOC_LEN or pos + length > r.filled:
                break
            starts.append(pos)
            lengths.append(length)
            pos += length
        self.base, self.starts, self.next = r.base, starts, 0
        ok, ids, categories, first, picture_starts, picture_lengths = kaggle_layout(buf, starts, lengths)
        self.ok, self.product_ids, self.category_ids = ok.tolist(), ids.tolist(), categories.tolist()
        self.first, self.picture_lengths = first.tolist(), picture_lengths.tolist()
        self.facts = self._facts(buf, facts, ok, first, picture_starts, picture_lengths)

    @staticmethod
    def _facts(buf, facts, ok, first, picture_starts, picture_lengths):
        """For each fact, {document: [(image number, value) where not 0]} of the documents
        of Kaggle's layout (the others are decoded on their own)."""
        rows = np.repeat(ok, np.diff(first))
        out = []
        for fact in facts:
            values = np.zeros(len(rows), fact.dtype)
            values[rows] = fact.located(buf, picture_starts[rows], picture_lengths[rows])
            out.append(_non_zero(values, first))
        return out

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
    `BsonFormatError`, or with `skip_bad` are appended to `problems` (dicts: see `problem_record`,
    with the bytes skipped and the products lost in them) and skipped; duplicate ids are
    checked by `BsonIndex.build`.

    After a broken length prefix or a corrupt document the scan re-synchronises on the next
    plausible document start (sane length, an `_id` element, a NUL at its end), searching
    from the broken document's start, so that documents its (wrong) length would cover are
    kept; every `_id` element passed over belongs to a damaged document and is counted lost.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    bad = SkipBad(skip_bad, log, [] if problems is None else problems)
    facts = pictures.facts if pictures is not None else ()

    def report(offset, product_id, reason, end, lost=()):
        """Raise the problem, or with `skip_bad` log and record it with the bytes [offset, end)
        it cost and the ids of the products lost in them."""
        err = BsonFormatError(path, offset, product_id, reason)
        bad.handle(err, problem_record(err, end, [product_id, *lost]))

    def skip_damage(offset, product_id, reason):
        """Report a damaged region, from `offset` to the next plausible document start, and
        move there; False at the end of the file. The product is the damaged document's own
        `_id` when still readable."""
        product_id = _id_at(r.buf, r.pos, r.filled) if product_id is None else product_id
        if not bad.skip:
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
            r.fill(AFTER_ID)   # length prefix and an int32 `_id` element
            pos, offset = r.pos, r.offset
            if pos >= r.filled:
                return
            if r.filled - pos < LENGTH_PREFIX:
                report(offset, None, f"truncated document: {r.filled - pos} trailing bytes, no length prefix",
                       r.file_size)
                return
            length = INT32.unpack_from(buf, pos)[0]
            if MIN_DOC_LEN <= length <= MAX_DOC_LEN:
                r.fill(length)
                pos = r.pos
            i = run.at(r) if run is not None else None
            if i is None and MIN_DOC_LEN <= length <= MAX_DOC_LEN and pos + length <= r.filled:
                run = _LayoutRun(r, pos, facts)
                i = run.at(r)
            if i is not None and run.ok[i]:        # the common case: a Kaggle-layout document
                product_id, category_id = run.product_ids[i], run.category_ids[i]
                a, b = run.first[i], run.first[i + 1]
                n_images, found_facts = b - a, (run.picture_lengths[a:b], [f.get(i, ()) for f in run.facts])
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
                    product_id, category_id, found = parse_document(buf, pos, length)
                except BadDocument as e:
                    if not skip_damage(offset, e.product_id, e.reason):
                        return
                    continue
                n_images, found_facts = len(found), (_decoded_facts(found, facts) if pictures is not None else None)
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
                pictures.add(*found_facts)
            if with_bytes:
                yield offset, length, product_id, n_images, category_id, r.view[pos:pos + length]
            else:
                yield offset, length, product_id, n_images, category_id
            r.pos = pos + length




def problem_record(err, end, lost_ids):
    """What the index records of a skipped problem: the error's fields (path, offset,
    product_id, reason), `end`, where the bytes it skipped end, and `lost_product_ids`,
    the ids (where readable) of the products lost in them."""
    return dict(err.as_dict(), end=end, lost_product_ids=list(dict.fromkeys(i for i in lost_ids if i is not None)))


def _damage_text(offset, end, lost_ids):
    """What a damaged region cost, for its error message."""
    ids = f"lost product ids {', '.join(map(str, lost_ids))}" if lost_ids else "no product id readable in them"
    return f"skipped bytes {offset}..{end} ({end - offset:,} bytes; {ids})"


