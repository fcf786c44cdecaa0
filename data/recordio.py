"""MXNet RecordIO image records written without MXNet, byte for byte as MXNet writes them.

The conversion workers write millions of small records. Doing it in pure Python keeps
MXNet (a 2 s import, ~150 MB of resident libraries) out of the worker processes, knows
every record's offset without a `tell()` round trip into C, and lets a record go out as
two buffered writes (a 32-byte prefix and the untouched JPEG bytes) without building the
packed string first; `ImageRecordWriter.write_many` writes a whole batch of records with a
few numpy operations and one copy of each image (no Python work per record beyond that
copy). The bytes are exactly those of dmlc's `RecordIOWriter` behind
`mx.recordio.MXRecordIO.write(mx.recordio.pack(header, jpeg))` (tested against it):

* a record is `magic (0xced7230a, little-endian) | lrec | payload | zero padding to 4`,
  with `lrec = cflag << 29 | length`;
* the payload of an image record is MXNet's `IRHeader` (`<IfQQ`: flag, label, id, id2)
  followed by the image bytes;
* a payload holding the magic word at a 4-byte-aligned position is split there into
  parts (cflag 1 = first, 2 = middle, 3 = last); the magic word itself is dropped and the
  reader puts it back. JPEG bytes do contain it now and then: with ~3·10^10 aligned
  words in the 12 M images of train.bson, a handful of records need this.

The `.idx` beside a `.rec` is MXNet's `MXIndexedRecordIO` text format: `key\\toffset\\n`.

Reading (`read_idx`, `read_record`, `read_indexed_record`, `iter_records`, `unpack`,
`read_headers`, `read_payloads`) checks what MXNet's readers take on trust (its C++ reader
aborts the process on a broken frame): that the index lists every record of the `.rec`, in
order, without a gap, and that each offset holds a record; a pair that does not, or a
record damaged after the conversion, is a `RecordFileError` naming the file, the offset
and the record.
"""
import mmap
import os
import struct
import warnings

import numpy as np

from data.errors import DataInputError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_MAGIC_EVEN = int.from_bytes(MAGIC_BYTES[0:2], "little")   # `magic_positions`
_MAGIC_ODD = int.from_bytes(MAGIC_BYTES[1:3], "little")
IR_HEADER = struct.Struct("<IfQQ")          # mx.recordio._IR_FORMAT ('IfQQ') on little-endian
MAX_RECORD_BYTES = (1 << 29) - 1            # lrec keeps 29 bits for the length
_LREC_SHIFT = 29
_SCAN_CHUNK = 256 << 10                    # bytes `write_many` copies before scanning them
# magic + lrec + IRHeader of an unsplit record, packed in one call.
_PREFIX = struct.Struct("<II" + IR_HEADER.format[1:])
_FRAME = struct.Struct("<II")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")


def record_paths(rec_path):
    """``(rec, idx, report)``: the three files of an indexed RecordIO output named by its
    ``.rec`` path (``A_train.rec``, ``A_train.idx``, ``A_train.report.json``), the one place
    their naming is written. A path that does not end in a file name ending ``.rec`` (a
    folder, or a path ending in ``/``, which would give hidden names such as ``DIR/.rec``)
    is a ``ValueError``."""
    name = os.path.basename(rec_path)
    if not name.endswith(".rec") or name == ".rec" or os.path.isdir(rec_path):
        raise ValueError(f"{rec_path}: not the path of a .rec file (a file name ending in .rec, e.g. DIR/A_train.rec)")
    stem = rec_path[:-4]
    return stem + ".rec", stem + ".idx", stem + ".report.json"


def pack_header(label, record_id, record_id2):
    """MXNet's `IRHeader(flag=0, label, id, id2)` bytes (what `mx.recordio.pack` prepends)."""
    return IR_HEADER.pack(0, label, record_id, record_id2)


def _aligned_magic(buf, start=0, stop=None):
    """First 4-byte-aligned position in buf[start:stop) where the magic word starts, or -1."""
    stop = len(buf) if stop is None else stop
    pos = buf.find(MAGIC_BYTES, start, stop)
    while pos >= 0 and pos % 4:
        pos = buf.find(MAGIC_BYTES, pos + 1, stop)
    return pos


def magic_positions(buf, start=0, stop=None, chunk=1 << 20):
    """Every position p in [start, stop - 4] where buf[p:p+4] is the magic word, at any
    alignment (int64 array, ascending); vectorised. A magic word at an even position starts
    with the aligned 16-bit word `0a 23`, one at an odd position holds the aligned `23 d7`:
    two comparisons of aligned 16-bit words find the few candidates, checked byte by byte
    (`chunk`, even, bytes at a time)."""
    u8 = np.frombuffer(buf, np.uint8)
    stop = len(u8) if stop is None else stop
    found = []
    for a in range(start & ~1, stop - 3, chunk):
        b = min(a + chunk, stop - 3)                        # candidate starts in [a, b)
        words = np.frombuffer(buf, np.uint16, count=(b - a + 2) // 2, offset=a)
        candidates = np.concatenate([np.flatnonzero(words == _MAGIC_EVEN) * 2 + a,
                                     np.flatnonzero(words == _MAGIC_ODD) * 2 + a - 1])
        candidates = np.sort(candidates[(candidates >= max(start, a)) & (candidates < b)])
        match = np.ones(len(candidates), bool)
        for k in range(4):
            match &= u8[candidates + k] == MAGIC_BYTES[k]
        found.append(candidates[match])
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def image_record_bytes(image_lengths, magic_words, record_ids):
    """Bytes of the records `ImageRecordWriter` writes for images of `image_lengths` bytes that
    hold `magic_words` aligned magic words each (`aligned_magic_words`), with IRHeader ids
    `record_ids`: frame, IRHeader, image, padding to 4, and 4 more bytes for each split (a
    frame of 8 bytes replaces the dropped magic word). Besides the image, only the id words
    can hold the magic (a label is a class id or -1, `id2` an image number)."""
    payload = np.asarray(image_lengths, np.int64) + IR_HEADER.size
    ids = np.asarray(record_ids, np.int64)
    splits = np.asarray(magic_words, np.int64) + ((ids & 0xFFFFFFFF) == MAGIC) + ((ids >> 32) == MAGIC)
    return _FRAME.size + payload + (-payload & 3) + 4 * splits


def aligned_magic_words(image):
    """How many times dmlc's RecordIO writer splits the record of `image`: the 4-byte-aligned
    words of the image equal to the magic (the IRHeader before it is 24 bytes, so the image's
    own aligned words are the payload's)."""
    n = len(image) & ~3
    return int(np.count_nonzero(np.frombuffer(image, np.uint32, count=n // 4) == MAGIC)) if n else 0


def aligned_magic_counts(buf, starts, lengths):
    """`aligned_magic_words` of each image buf[starts[i]:starts[i] + lengths[i]] (int64; the
    images ascending and apart, as in a read buffer of BSON documents), with one vectorised
    scan of the bytes they span (`magic_positions`) instead of one per image."""
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    counts = np.zeros(len(starts), np.int64)
    if not len(starts):
        return counts
    hits = magic_positions(buf, int(starts[0]), int(starts[-1] + lengths[-1]))
    k = np.searchsorted(starts, hits, side="right") - 1
    inside = (k >= 0) & (hits + 4 <= starts[k] + lengths[k]) & ((hits - starts[k]) % 4 == 0)
    np.add.at(counts, k[inside], 1)
    return counts


def encode_record(payload):
    """The exact bytes dmlc's RecordIOWriter writes for one record holding `payload`."""
    length = len(payload)
    if length > MAX_RECORD_BYTES:
        raise ValueError(f"a RecordIO record holds at most {MAX_RECORD_BYTES} bytes, not {length}")
    lower_align = length & ~3     # dmlc only looks for the magic word in whole aligned words
    chunks, start = [], 0
    hit = _aligned_magic(payload, 0, lower_align)
    while hit >= 0:
        cflag = 1 if start == 0 else 2
        chunks += [_FRAME.pack(MAGIC, cflag << _LREC_SHIFT | (hit - start)), payload[start:hit]]
        start = hit + 4
        hit = _aligned_magic(payload, start, lower_align)
    cflag = 3 if start else 0
    chunks += [_FRAME.pack(MAGIC, cflag << _LREC_SHIFT | (length - start)), payload[start:],
               _PADDING[length % 4]]
    return b"".join(chunks)


_scratch = {}     # name -> buffer reused by this process (fresh memory costs a page fault per 4 KB)


def new_buffer(size):
    """A writable byte buffer (memoryview) of `size` bytes, not initialised: unlike
    `bytearray(size)`, nothing is written to it before its user does."""
    return memoryview(np.empty(size, np.uint8))


def _scratch_buffer(name, size):
    """A process-wide reusable buffer of at least `size` bytes (content undefined)."""
    buf = _scratch.get(name)
    if buf is None or len(buf) < size:
        buf = _scratch[name] = new_buffer(_round8(size + size // 8))
    return buf


def _round8(n):
    return (n + 7) & ~7


def release_buffers():
    """Free the buffers this process keeps for reuse (`MemoryFile(reuse=True)`, `write_many`)."""
    _scratch.clear()


class MemoryFile:
    """A write-only file in memory for `ImageRecordWriter`: `write_many` assembles its records
    right in it, and the finished content (`view()`) goes out to a file in one call. With
    `reuse`, the buffer is the process's reusable one (one `MemoryFile` at a time)."""

    def __init__(self, capacity=0, reuse=False):
        self.reuse = reuse
        self.buf = _scratch_buffer("memory_file", capacity) if reuse else new_buffer(_round8(capacity))
        self.size = 0

    def reserve(self, n):
        """The buffer, with room for `n` more bytes after `size` (moved to a larger one if needed)."""
        if self.size + n > len(self.buf):
            old = self.buf
            self.buf = new_buffer(_round8(max(self.size + n, len(old) + len(old) // 2)))
            self.buf[:self.size] = old[:self.size]
            if self.reuse:
                _scratch["memory_file"] = self.buf
        return self.buf

    def write(self, data):
        n = len(data)
        self.reserve(n)[self.size:self.size + n] = data
        self.size += n
        return n

    def view(self):
        return self.buf[:self.size]


class ImageRecordWriter:
    """Appends image records to a binary file object (or a `MemoryFile`); `offset` is where the
    next one starts.

    A file object should be buffered (`write` sends a record as a few small pieces)."""

    def __init__(self, f, offset=0):
        self.f = f
        self.offset = offset

    def write(self, label, record_id, record_id2, image):
        """Write `pack(IRHeader(0, label, record_id, record_id2), image)`; return its offset."""
        if not isinstance(image, (bytes, bytearray)):
            image = bytes(image)          # e.g. a memoryview, whose `in` would compare items, not bytes
        offset = self.offset
        length = IR_HEADER.size + len(image)
        prefix = _PREFIX.pack(MAGIC, length, 0, label, record_id, record_id2)
        # Any occurrence of the magic word (aligned or not, rare) takes the exact general path.
        if MAGIC_BYTES not in image and prefix.find(MAGIC_BYTES, _FRAME.size) < 0 and length <= MAX_RECORD_BYTES:
            self.f.write(prefix)
            self.f.write(image)
            if length % 4:
                self.f.write(_PADDING[length % 4])
            self.offset += _FRAME.size + length + (-length % 4)
        else:
            data = encode_record(prefix[_FRAME.size:] + bytes(image))
            self.f.write(data)
            self.offset += len(data)
        return offset

    def write_many(self, source, starts, lengths, labels, record_ids, record_ids2):
        """Write one record per image, image i being source[starts[i]:starts[i] + lengths[i]]
        (`source` a bytes-like object, the other arguments arrays); return the records' offsets
        (uint64). The bytes are those of `write` called for each image in turn.

        The records are assembled in one buffer (the `MemoryFile` itself, or a reusable one
        whose content then goes out in one `write`): headers by numpy, images by one slice
        copy each, then one scan for the magic word. A record starts at a multiple of 4 bytes,
        so the aligned words of its payload are aligned words of the buffer, and comparing all
        the buffer's uint32 words with the magic finds every payload word dmlc would split at:
        the record-start magic words are only filled in after the scan, a length word is below
        2^29, and a word holding padding has a zero byte, so none of them can match. A batch
        with such a word (rare) is written by `write`, record by record."""
        lengths = np.asarray(lengths, np.int64)
        if not len(lengths):
            return np.zeros(0, np.uint64)
        labels = np.asarray(labels, np.float32)
        record_ids, record_ids2 = np.asarray(record_ids, np.int64), np.asarray(record_ids2, np.int64)
        payload = lengths + IR_HEADER.size
        if payload.max() > MAX_RECORD_BYTES or record_ids.min() < 0 or record_ids2.min() < 0:
            return self._write_each(source, starts, lengths, labels, record_ids, record_ids2)
        sizes = _FRAME.size + payload + (-payload & 3)
        ends = np.cumsum(sizes)
        begins = ends - sizes
        total = int(ends[-1])
        in_memory = isinstance(self.f, MemoryFile)
        if in_memory and self.f.size % 4:     # (records keep it a multiple of 4)
            return self._write_each(source, starts, lengths, labels, record_ids, record_ids2)
        if in_memory:
            out, base = self.f.reserve(total), self.f.size
        else:
            out, base = _scratch_buffer("assembly", total), 0
        words = np.frombuffer(out, np.uint32, count=(base + total) >> 2)
        w = (base + begins) >> 2
        words[w + (sizes >> 2) - 1] = 0            # the last word: zero padding, then image bytes
        words[w] = 0                               # the magic, written after the scan
        words[w + 1] = payload                     # lrec: cflag 0, length
        words[w + 2] = 0                           # IRHeader.flag
        words[w + 3] = labels.view(np.uint32)
        words[w + 4] = record_ids & 0xFFFFFFFF
        words[w + 5] = record_ids >> 32
        words[w + 6] = record_ids2 & 0xFFFFFFFF
        words[w + 7] = record_ids2 >> 32
        with memoryview(out) as dst, memoryview(source) as src:
            src = src.cast("B")
            targets = (base + begins + _FRAME.size + IR_HEADER.size).tolist()
            sources, counts = np.asarray(starts).tolist(), lengths.tolist()
            word_ends = ((base + ends) >> 2).tolist()
            hits = np.frombuffer(_scratch_buffer("hits", total >> 2), bool, count=total >> 2)
            # Copy and scan ~256 KB at a time, so that the scan reads the words from the cache.
            cuts = np.searchsorted(ends, np.arange(_SCAN_CHUNK, total, _SCAN_CHUNK), side="right").tolist()
            first_word = base >> 2
            for i, j in zip([0, *cuts], [*cuts, len(counts)]):
                if i == j:
                    continue
                for o, a, n in zip(targets[i:j], sources[i:j], counts[i:j]):
                    dst[o:o + n] = src[a:a + n]
                chunk = hits[:word_ends[j - 1] - first_word]
                np.equal(words[first_word:word_ends[j - 1]], MAGIC, out=chunk)
                if chunk.any():
                    return self._write_each(source, starts, lengths, labels, record_ids, record_ids2)
                first_word = word_ends[j - 1]
            words[w] = MAGIC
            if in_memory:
                self.f.size += total
            else:
                self.f.write(dst[:total])
        offsets = begins.astype(np.uint64) + np.uint64(self.offset)
        self.offset += total
        return offsets

    def _write_each(self, source, starts, lengths, labels, record_ids, record_ids2):
        with memoryview(source) as src:
            src = src.cast("B")
            return np.array([self.write(label, record_id, record_id2, src[a:a + n])
                             for a, n, label, record_id, record_id2 in
                             zip(np.asarray(starts).tolist(), lengths.tolist(), labels.tolist(),
                                 record_ids.tolist(), record_ids2.tolist())], np.uint64)


def write_idx(f, offsets, first_key=0):
    """Write MXNet `.idx` lines `key\\toffset` for consecutive keys from `first_key`."""
    offsets = np.asarray(offsets, np.uint64)
    pairs = np.empty((len(offsets), 2), np.uint64)
    pairs[:, 0] = np.arange(first_key, first_key + len(offsets), dtype=np.uint64)
    pairs[:, 1] = offsets
    f.write(("%d\t%d\n" * len(offsets)) % tuple(pairs.ravel().tolist()))


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
_LENGTH_MASK = (1 << _LREC_SHIFT) - 1
# The frame and IRHeader that open an unsplit image record (what `_PREFIX` packs).
RECORD_HEADER = np.dtype([("magic", "<u4"), ("lrec", "<u4"), ("flag", "<u4"), ("label", "<f4"),
                          ("id", "<u8"), ("id2", "<u8")])
_CHUNK_BYTES = 64 << 20


class RecordFileError(DataInputError):
    """A `.rec` / `.idx` pair that does not hold what `ImageRecordWriter` and `write_idx` write:
    an index line that is not `key<TAB>offset` with keys 0..n-1 and ascending offsets, an
    offset where no record starts, bytes of the `.rec` that no index line reaches (a
    truncated `.idx`), a record that runs past the end of the `.rec` (a truncated `.rec`)."""


def read_idx(idx_path):
    """The record offsets (int64, in key order) of an `.idx` written by `write_idx`: lines
    `key<TAB>offset` with keys 0..n-1 and ascending offsets, else `RecordFileError` naming
    the line. numpy's text parser reads the 12 M lines of the full training side in ~5 s."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        values = np.fromfile(idx_path, np.int64, sep=" ")
    if caught or len(values) % 2:           # numpy stops (with a warning) at a token that is not an integer
        line, text = _first_malformed_line(idx_path)
        raise RecordFileError(idx_path, None, None, f"line {line} is not 'key<TAB>offset': {text!r}")
    keys, offsets = values[0::2], values[1::2]
    wrong = np.flatnonzero(keys != np.arange(len(keys)))
    if len(wrong):
        raise RecordFileError(idx_path, None, None, f"line {wrong[0] + 1} has key {keys[wrong[0]]}, expected "
                                                    f"{wrong[0]} (keys are 0..n-1 in record order)")
    wrong = np.flatnonzero(offsets <= np.concatenate([[-1], offsets[:-1]]))
    if len(wrong):
        raise RecordFileError(idx_path, None, None, f"line {wrong[0] + 1} has offset {offsets[wrong[0]]}, which "
                                                    f"does not follow the previous record's")
    return offsets


def _first_malformed_line(path):
    """(number, text) of the first line of `path` that is not two integers."""
    number = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if fields and (len(fields) != 2 or not all(field.lstrip(b"-").isdigit() for field in fields)):
                return number, line[:80].decode("utf-8", "replace").rstrip("\n")
    return number, ""


def read_record(f, offset):
    """(payload, end) of the record at `offset` of the binary file `f`: its payload with the
    parts of a split record joined, and the offset where the next record starts."""
    parts, pos = [], offset
    while True:
        f.seek(pos)
        frame = f.read(_FRAME.size)
        magic, lrec = _FRAME.unpack(frame) if len(frame) == _FRAME.size else (None, 0)
        cflag, length = lrec >> _LREC_SHIFT, lrec & _LENGTH_MASK
        if magic != MAGIC or (cflag in (0, 1)) != (pos == offset):
            raise RecordFileError(f.name, offset, None, "no record starts here: the index does not belong to this "
                                  ".rec" if pos == offset else f"the record breaks off at offset {pos}: the .rec is "
                                  "damaged")
        data = f.read(length)
        if len(data) < length:
            raise RecordFileError(f.name, offset, None, f"the record runs past the end of the file ({length} bytes "
                                                        f"from offset {pos + _FRAME.size}): the .rec is truncated")
        parts.append(data)
        pos += _FRAME.size + length + (-length & 3)
        if cflag in (0, 3):
            return MAGIC_BYTES.join(parts), pos


def read_payload(fd, offset, guess=1 << 14):
    """The payload of the record at `offset` of the file descriptor `fd`, as a memoryview,
    with one ``os.pread`` (a second one when it is longer than `guess` bytes): random access
    without a file object's seek and buffer (14 µs a record, against 3 µs). None when the
    record is split in parts (its payload holds the magic word) or is not a whole record
    there: `read_record` then reads it, or says what is wrong."""
    head = os.pread(fd, guess, offset)
    if len(head) < _FRAME.size:
        return None
    magic, lrec = _FRAME.unpack_from(head)
    end = _FRAME.size + (lrec & _LENGTH_MASK)
    if magic != MAGIC or lrec >> _LREC_SHIFT:
        return None
    if len(head) < end:
        head += os.pread(fd, end - len(head), offset + len(head))
    return memoryview(head)[_FRAME.size:end] if len(head) >= end else None


def iter_records(rec_path):
    """Yield (offset, payload) of every record of `rec_path` in file order, read without its
    `.idx` as MXNet's `MXRecordIO.read` does (split records joined)."""
    size = os.path.getsize(rec_path)
    with open(rec_path, "rb") as f:
        pos = 0
        while pos < size:
            payload, end = read_record(f, pos)
            yield pos, payload
            pos = end


def unpack(payload):
    """((flag, label, id, id2), image bytes) of an image record's payload: what
    `mx.recordio.unpack` gives (for the `flag` 0 records `ImageRecordWriter` writes)."""
    return IR_HEADER.unpack_from(payload), payload[IR_HEADER.size:]


def _spans(f, offsets, chunk_bytes):
    """(first, stop, buffer) for consecutive runs of the records at `offsets` (ascending),
    buffer holding the file from offsets[first] on, through the next record's start (or the
    end of the file), plus 32 zero bytes: about `chunk_bytes` a run, read in order."""
    size = os.fstat(f.fileno()).st_size
    first = 0
    while first < len(offsets):
        stop = max(first + 1, int(np.searchsorted(offsets, offsets[first] + chunk_bytes)))
        end = int(offsets[stop]) if stop < len(offsets) else size
        base = int(offsets[first])
        buf = np.zeros(max(end - base, 0) + RECORD_HEADER.itemsize, np.uint8)
        f.seek(base)
        f.readinto(memoryview(buf)[:max(end - base, 0)])
        yield first, stop, buf
        first = stop


def read_headers(rec_path, offsets, chunk_bytes=_CHUNK_BYTES):
    """The `RECORD_HEADER` of every record at `offsets` (from `read_idx`) of `rec_path`, in one
    pass over the file in order; checks every record's frame: its magic word, and that the
    records follow one another without a gap (each frame's length ends where the next record
    starts) and that the last one ends where the file does (`RecordFileError` naming the
    first that does not: a record damaged after the conversion, or an index of another
    `.rec`). The headers of split records (rare) are those of their joined payloads.

    The headers are gathered from a memory map of the file, 32 bytes a record, `chunk_bytes`
    of the file at a time: 0.3-0.45 µs a record of 4 KB in the page cache on 2 cores (4 s
    for the 12 M records of the full training side; reading the whole file into buffers, as
    this did before, took 2.6 µs); from disk, the time of reading the file once."""
    offsets = np.asarray(offsets, np.int64)
    size = os.path.getsize(rec_path)
    misaligned = np.flatnonzero((offsets % 4 != 0) | (offsets + _FRAME.size > size))
    if len(misaligned):
        i = int(misaligned[0])
        raise RecordFileError(rec_path, int(offsets[i]), None,
                              f"no record {i} here (the file holds {size} bytes; records start at multiples of 4)")
    headers = _gather_headers(rec_path, offsets, size, chunk_bytes)
    h = headers
    lengths = (h["lrec"] & _LENGTH_MASK).astype(np.int64)
    ends = offsets + _FRAME.size + lengths + (-lengths & 3)
    bad = np.flatnonzero((h["magic"] != MAGIC) | (h["lrec"] >> _LREC_SHIFT > 1))
    if len(bad):
        i = int(bad[0])
        raise RecordFileError(rec_path, int(offsets[i]), None, _broken_frame(i, h["magic"][i], h["lrec"][i]))
    with open(rec_path, "rb") as f:
        for i in np.flatnonzero(h["lrec"] >> _LREC_SHIFT == 1).tolist():
            payload, ends[i] = read_record(f, int(offsets[i]))
            h[i] = np.frombuffer(_FRAME.pack(MAGIC, len(payload)) + payload[:IR_HEADER.size], RECORD_HEADER)[0]
    _check_contiguous(rec_path, offsets, ends, size)
    return headers


# What a record whose frame does not fit the index says (the index and the conversion report
# may match the file: then only the record's bytes were changed, after the conversion).
_DAMAGED = ("; the .rec was changed after its conversion (or its index belongs to another .rec): convert it again "
            "(data.bson2rec, shell/bson2rec_trainval.sh)")


def _broken_frame(i, magic, lrec):
    return (f"record {i} is damaged: its frame (magic word {int(magic):#010x}, length word {int(lrec):#010x}) is not "
            f"a record's start{_DAMAGED}")


def _misplaced_end(i, end, next_offset):
    return f"record {i} ends at offset {end} but the index puts record {i + 1} at {next_offset}: record {i} is " \
           f"damaged{_DAMAGED}"


def _next_record(f, offsets, i):
    """Where record `i` of the `.rec` open as `f`, whose records start at `offsets`, must end:
    where record i + 1 starts, or for the last one where the file ends."""
    return int(offsets[i + 1]) if i + 1 < len(offsets) else os.fstat(f.fileno()).st_size


def read_indexed_record(f, offsets, i):
    """The payload of record `i` of the `.rec` open as the binary file `f`, whose records
    start at `offsets` (`read_idx`), its frame checked as `read_headers` checks every
    record's: the magic word, a payload that holds an `IRHeader`, and an end where record
    i + 1 starts (of the last record, where the file ends); else a `RecordFileError` naming
    the record and its offset. What training's input workers read a record with: the check
    costs one 8-byte read more, next to a picture's decoding (~100 µs)."""
    offset = int(offsets[i])
    f.seek(offset)
    frame = f.read(_FRAME.size)
    magic, lrec = _FRAME.unpack(frame) if len(frame) == _FRAME.size else (0, 0)
    if magic != MAGIC or lrec >> _LREC_SHIFT > 1:
        raise RecordFileError(f.name, offset, None, _broken_frame(i, magic, lrec))
    try:
        payload, end = read_record(f, offset)
    except RecordFileError as err:
        raise RecordFileError(f.name, offset, None, f"record {i} is damaged ({err.reason}){_DAMAGED}") from None
    next_offset = _next_record(f, offsets, i)
    if end != next_offset:
        raise RecordFileError(f.name, offset, None, _misplaced_end(i, end, next_offset))
    if len(payload) < IR_HEADER.size:
        raise RecordFileError(f.name, offset, None, f"record {i} is damaged: its {len(payload)}-byte payload cannot "
                                                    f"hold a record header{_DAMAGED}")
    return payload


def read_indexed_payload(f, offsets, i):
    """`read_indexed_record`'s payload of record `i`, with the same checks, in one ``os.pread``
    when the record is whole there (`read_payload`: 3 µs a record against 14 µs through the
    file object): its frame must end where record i + 1 starts (the last one, where the file
    ends) and hold an `IRHeader`; anything else goes through `read_indexed_record`, which
    joins a split record or says what is wrong (a `RecordFileError` naming the record)."""
    offset = int(offsets[i])
    payload = read_payload(f.fileno(), offset)
    if payload is not None and len(payload) >= IR_HEADER.size:
        end = offset + _FRAME.size + len(payload) + (-len(payload) & 3)
        if end == _next_record(f, offsets, i):
            return payload
    return read_indexed_record(f, offsets, i)


def _gather_headers(rec_path, offsets, size, chunk_bytes):
    """`RECORD_HEADER` of each record at `offsets` (multiples of 4, each inside the file of
    `size` bytes): the file's 32-bit words there, gathered from a memory map, zeros past its end."""
    headers = np.zeros(len(offsets), RECORD_HEADER)
    if not len(offsets):
        return headers
    fields = RECORD_HEADER.itemsize // 4
    out = headers.view(np.uint32).reshape(len(offsets), fields)
    with open(rec_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        words = np.frombuffer(mapped, np.uint32, count=size // 4)
        first = 0
        while first < len(offsets):
            stop = max(first + 1, int(np.searchsorted(offsets, offsets[first] + chunk_bytes)))
            at = offsets[first:stop, None] // 4 + np.arange(fields)
            out[first:stop] = np.where(at < len(words), words[np.minimum(at, len(words) - 1)], 0)
            first = stop
        del words                  # (the map cannot close while a view of it exists)
    return headers


def _check_contiguous(rec_path, offsets, ends, size):
    gaps = np.flatnonzero(ends[:-1] != offsets[1:])
    if len(gaps):
        i = int(gaps[0])
        raise RecordFileError(rec_path, int(offsets[i]), None, _misplaced_end(i, ends[i], offsets[i + 1]))
    if len(ends) and ends[-1] != size:
        raise RecordFileError(rec_path, int(offsets[-1]), None, index_coverage_problem(len(ends), ends[-1], size))


def index_coverage_problem(records, end, size):
    """Why `records` records ending at `end` do not make a .rec of `size` bytes."""
    if end > size:
        return f"the last record runs past the end of the file ({size} bytes): the .rec is truncated"
    return (f"the index lists {records} records, which end at offset {end}, but the file holds {size} bytes: "
            f"the index is truncated or belongs to another .rec")


def read_payloads(rec_path, offsets, chunk_bytes=_CHUNK_BYTES):
    """Yield (first, buf, starts, lengths) for consecutive runs of the records at `offsets` of
    `rec_path`, in file order, about `chunk_bytes` a run: the payload of record first + j is
    buf[starts[j]:starts[j] + lengths[j]] (split records joined). Vectorised: no Python work
    per record unless a run holds a split record (rare), so that a check of every picture of
    the file (`data.jpeg.jpeg_problems`) costs little more than reading it."""
    offsets = np.asarray(offsets, np.int64)
    with open(rec_path, "rb") as f:
        for first, stop, buf in _spans(f, offsets, chunk_bytes):
            at = offsets[first:stop] - offsets[first]
            frames = buf[at[:, None] + np.arange(_FRAME.size)].view("<u4")
            lengths = (frames[:, 1] & _LENGTH_MASK).astype(np.int64)
            whole = (frames[:, 0] == MAGIC) & (frames[:, 1] >> _LREC_SHIFT == 0) \
                & (at + _FRAME.size + lengths <= len(buf) - RECORD_HEADER.itemsize)
            if whole.all():
                yield first, buf, at + _FRAME.size, lengths
                continue
            payloads = [buf[a + _FRAME.size:a + _FRAME.size + n].tobytes() if ok else read_record(f, int(o))[0]
                        for a, n, ok, o in zip(at.tolist(), lengths.tolist(), whole.tolist(),
                                               offsets[first:stop].tolist())]
            lengths = np.array([len(p) for p in payloads], np.int64)
            yield first, np.frombuffer(b"".join(payloads), np.uint8), np.cumsum(lengths) - lengths, lengths
