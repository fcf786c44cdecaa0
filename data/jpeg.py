"""Will a picture decode? A structural JPEG check, vectorised over many pictures of one buffer.

A picture that OpenCV cannot decode stops training deep inside MXNet (`!ssize.empty() in
function 'resize'`, naming no record), so the conversion checks every picture first. A full
decode (`cv2.imdecode`) costs ~120 µs a picture here (about 25 minutes of CPU for the 12 M
pictures of train.bson); this check reads only the marker segments of the header and the
last bytes, with numpy over all the pictures of a buffer at once, so that the index pass
runs it on every picture as it reads them (`bench/bench_bson2rec.py` measures its cost).
A picture passes when:

* it starts with the JPEG signature `FF D8 FF` (what OpenCV looks for);
* its marker segments, from the start-of-image marker to the start of the scan (SOS), are
  consistent: each is `FF` + a marker libjpeg accepts before a scan, its length stays inside
  the picture (fill bytes `FF` and parameterless markers allowed);
* before the scan it has a quantization table (DQT) and a frame header (SOF) that libjpeg
  decodes: baseline, extended, progressive or arithmetic (SOF0-2, 9-10), 8-bit samples, a
  non-zero height and width, a length matching its component count; the SOS header's length
  matches its component count (1 to 4);
* an end-of-image marker `FF D9` lies among its last `EOI_TAIL` bytes (a few bytes of padding
  after it are tolerated; entropy-coded data cannot hold `FF D9`, so a picture cut anywhere
  in its scan fails).

What it catches, measured on thousands of damaged copies of the official sample's pictures
and of synthetic ones (`tests/test_jpeg.py`): empty pictures, random bytes and every
truncation (OpenCV fails on all of those too); of single bytes changed in the header, those
that OpenCV cannot decode are caught 83-85% of the time: what passes has changed Huffman
code values, which only a decode can tell. Damage inside the entropy-coded data passes, as
OpenCV decodes those pictures (with artefacts). The check alone, on the first and last two
bytes (JPEG signature and end-of-image marker), would catch random bytes, empty and
truncated pictures at ~0.02 µs a picture, but no damaged header; this one costs about 1.5
to 3 µs a picture on this machine (numpy's scattered reads, a cache miss each), against
~120 µs for `cv2.imdecode` (~65 µs at 1/8 scale in grey).

    codes = jpeg_problems(buffer, starts, lengths)    # uint8 code per picture, OK = 0
    picture_problem(jpeg_bytes)                       # why it will not decode, or None
"""
import numpy as np

OK, EMPTY, NOT_JPEG, CORRUPT_HEADER, BAD_FRAME, TRUNCATED = range(6)
REASONS = {
    EMPTY: "empty picture",
    NOT_JPEG: "no JPEG start-of-image marker",
    CORRUPT_HEADER: "corrupt header (a marker segment is broken or runs past the end)",
    BAD_FRAME: "no decodable frame (frame header or quantization table missing, zero-sized, "
               "or a coding OpenCV cannot decode)",
    TRUNCATED: "truncated (no end-of-image marker)",
}
EOI_TAIL = 32          # the end-of-image marker must lie in the picture's last EOI_TAIL bytes
MAX_HEADER_STEPS = 256  # markers and fill bytes before the scan; more counts as a corrupt header

# What libjpeg does with each marker byte before the scan (jdmarker.c `read_markers`).
_BROKEN, _SEGMENT, _PARAMLESS, _FRAME, _UNSUPPORTED, _QUANT, _HUFFMAN, _SCAN, _FILL = range(9)
_MARKERS = np.full(256, _BROKEN, np.uint8)       # SOI, EOI, reserved markers: errors
_MARKERS[[0xCC, 0xDD, 0xDC, 0xFE, *range(0xE0, 0xF0)]] = _SEGMENT        # DAC, DRI, DNL, COM, APPn
_MARKERS[[0x01, *range(0xD0, 0xD8)]] = _PARAMLESS                         # TEM, RSTn
_MARKERS[[0xC0, 0xC1, 0xC2, 0xC9, 0xCA]] = _FRAME                          # SOFs libjpeg decodes
_MARKERS[[0xC3, 0xC5, 0xC6, 0xC7, 0xC8, 0xCB, 0xCD, 0xCE, 0xCF]] = _UNSUPPORTED  # lossless, hierarchical
_MARKERS[0xDB] = _QUANT                                                    # DQT
_MARKERS[0xC4] = _HUFFMAN                                                  # DHT
_MARKERS[0xDA] = _SCAN                                                     # SOS
_MARKERS[0xFF] = _FILL
_SAW_FRAME, _SAW_QUANT = 1, 2
_MAX_COMPONENTS = 4
_MAX_TABLES = 8        # tables in one DHT or DQT segment (a decoder holds 4 + 4 Huffman tables, 4 quantization)


class _Bytes:
    """Bytes, big-endian 16-bit words and sums of 16 bytes of a buffer at any positions
    (clipped into it): one gather per value, as reads scattered over a large buffer cost
    a cache miss each."""

    def __init__(self, buf):
        u8 = np.frombuffer(buf, np.uint8)
        if len(u8) < 16:
            u8 = np.concatenate([u8, np.zeros(16, np.uint8)])
        self.u8 = u8
        self.be16 = np.ndarray((len(u8) - 1,), ">u2", u8, 0, (1,))
        self.u64 = np.ndarray((len(u8) - 7,), "<u8", u8, 0, (1,))

    def __call__(self, pos):
        return self.u8[np.minimum(pos, len(self.u8) - 1)].astype(np.int64)

    def word(self, pos):
        return self.be16[np.minimum(pos, len(self.be16) - 1)].astype(np.int64)

    def sum16(self, pos):
        """Sum of the 16 bytes from each position (two 8-byte loads, bytes added in 16-bit lanes)."""
        pos = np.minimum(pos, len(self.u64) - 9)
        words = self.u64[pos], self.u64[pos + 8]
        lanes = sum((w & _EVEN_BYTES) + ((w >> np.uint64(8)) & _EVEN_BYTES) for w in words)
        return ((lanes * _LANE_SUM) >> np.uint64(48)).astype(np.int64)


_EVEN_BYTES = np.uint64(0x00FF00FF00FF00FF)
_LANE_SUM = np.uint64(0x0001000100010001)


def _frame_ok(byte, p, size):
    """SOF segments at `p` (of `size`) libjpeg decodes: 8-bit samples, non-zero height and
    width, 1-4 components with sampling factors 1-4 and a quantization table 0-3; and the
    (n, 4) component ids (-1 past the count)."""
    n = byte(p + 9)
    ok = (byte(p + 4) == 8) & (byte.word(p + 5) > 0) & (byte.word(p + 7) > 0) & (n >= 1) & (n <= _MAX_COMPONENTS) \
        & (size == 8 + 3 * n)
    ids = np.full((len(p), _MAX_COMPONENTS), -1, np.int64)
    for c in range(_MAX_COMPONENTS):
        present = c < n
        sampling, table = byte(p + 11 + 3 * c), byte(p + 12 + 3 * c)
        ok &= ~present | ((sampling >> 4 >= 1) & (sampling >> 4 <= 4) & (sampling & 15 >= 1) & (sampling & 15 <= 4)
                          & (table <= 3))
        ids[:, c] = np.where(present, byte(p + 10 + 3 * c), -1)
    return ok, ids


def _huffman_table(byte, q):
    """(ok, bytes) of the Huffman tables at `q`: class 0-1, id 0-3, at most 256 codes."""
    codes = byte.sum16(q + 1)
    return (byte(q) >> 4 <= 1) & (byte(q) & 15 <= 3) & (codes <= 256), 17 + codes


def _quant_table(byte, q):
    """(ok, bytes) of the quantization tables at `q`: 8- or 16-bit values, id 0-3."""
    precision = byte(q) >> 4
    return (precision <= 1) & (byte(q) & 15 <= 3), 1 + 64 * (precision + 1)


def _tables_ok(byte, p, stop, table):
    """Segments at `p` (ending at `stop`) made of whole tables (DHT, DQT: at most
    `_MAX_TABLES` each), every one valid by `table(byte, positions)`."""
    q, ok = p + 4, np.ones(len(p), bool)
    more = np.arange(len(p))
    for _ in range(_MAX_TABLES):
        more = more[q[more] < stop[more]]
        if not len(more):
            break
        valid, size = table(byte, q[more])
        ok[more] &= valid
        q[more] += size
    return ok & (q == stop)


def _scan_ok(byte, p, size, frame_ids):
    """SOS segments at `p` (of `size`): 1-4 components, each one of the frame's, with
    Huffman tables 0-3."""
    n = byte(p + 4)
    ok = (n >= 1) & (n <= _MAX_COMPONENTS) & (size == 6 + 2 * n)
    for c in range(_MAX_COMPONENTS):
        present = c < n
        selector, tables = byte(p + 5 + 2 * c), byte(p + 6 + 2 * c)
        ok &= ~present | ((frame_ids == selector[:, None]).any(axis=1) & (tables >> 4 <= 3) & (tables & 15 <= 3))
    return ok


def jpeg_problems(buf, starts, lengths):
    """uint8 problem code (`OK` = 0, else a key of `REASONS`) of each picture
    buf[starts[i]:starts[i] + lengths[i]] (see the module docstring)."""
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    byte = _Bytes(buf)
    ends = starts + lengths
    code = np.where(lengths == 0, EMPTY, OK).astype(np.uint8)
    signature = (lengths >= 4) & (byte.word(starts) == 0xFFD8) & (byte(starts + 2) == 0xFF)
    code[(code == OK) & ~signature] = NOT_JPEG
    pos, seen = starts + 2, np.zeros(len(starts), np.uint8)
    frame_ids = np.full((len(starts), _MAX_COMPONENTS), -1, np.int64)
    scan = np.zeros(len(starts), np.int64)        # where the entropy-coded data starts
    active = np.flatnonzero(code == OK)
    for _ in range(MAX_HEADER_STEPS):
        if not len(active):
            break
        p, end = pos[active], ends[active]
        marker = byte.word(p)
        kind = np.where(marker >> 8 == 0xFF, _MARKERS[marker & 0xFF], _BROKEN)
        size = byte.word(p + 2)
        stop = p + 2 + size
        fits = (p + 4 <= end) & (size >= 2) & (stop <= end)
        broken = (kind == _BROKEN) | ((kind != _FILL) & (kind != _PARAMLESS) & ~fits) \
            | ((kind == _PARAMLESS) & (p + 2 > end))
        for tables, table in ((_HUFFMAN, _huffman_table), (_QUANT, _quant_table)):
            rows = np.flatnonzero((kind == tables) & ~broken)
            broken[rows[~_tables_ok(byte, p[rows], stop[rows], table)]] = True
        frames = np.flatnonzero((kind == _FRAME) & ~broken)
        frame_ok, frame_ids[active[frames]] = _frame_ok(byte, p[frames], size[frames])
        bad_frame = (kind == _UNSUPPORTED) & ~broken
        bad_frame[frames[~frame_ok]] = True
        scans = np.flatnonzero((kind == _SCAN) & ~broken)
        broken[scans[~_scan_ok(byte, p[scans], size[scans], frame_ids[active[scans]])]] = True
        seen[active[frames[frame_ok]]] |= _SAW_FRAME
        seen[active[(kind == _QUANT) & ~broken]] |= _SAW_QUANT
        at_scan = (kind == _SCAN) & ~broken
        bad_frame |= at_scan & (seen[active] != (_SAW_FRAME | _SAW_QUANT))
        at_scan &= ~bad_frame
        code[active[broken]] = CORRUPT_HEADER
        code[active[bad_frame]] = BAD_FRAME
        scan[active[at_scan]] = stop[at_scan]
        pos[active] = np.where(kind == _FILL, p + 1, np.where(kind == _PARAMLESS, p + 2, stop))
        active = active[~broken & ~bad_frame & ~at_scan]
    code[active] = CORRUPT_HEADER                 # more than MAX_HEADER_STEPS markers
    scanned = np.flatnonzero(code == OK)
    scanned = scanned[byte.word(ends[scanned] - 2) != 0xFFD9]    # (most end with it)
    if len(scanned):
        tail = np.maximum(ends[scanned, None] - EOI_TAIL + np.arange(EOI_TAIL), scan[scanned, None])
        pairs = (byte(tail[:, :-1]) == 0xFF) & (byte(tail[:, 1:]) == 0xD9)
        code[scanned[~pairs.any(axis=1)]] = TRUNCATED
    return code


def describe(code, length):
    """The error phrase of problem `code` for a picture of `length` bytes."""
    return f"is not a decodable JPEG ({length} bytes): {REASONS[code]}"


def picture_problem(picture):
    """Why the JPEG bytes `picture` will not decode (`describe`'s phrase), or None."""
    code = int(jpeg_problems(picture, [0], [len(picture)])[0])
    return describe(code, len(picture)) if code else None
