"""MXNet RecordIO image records written without MXNet, byte for byte as MXNet writes them.

The conversion workers write millions of small records. Doing it in pure Python keeps
MXNet (a 2 s import, ~150 MB of resident libraries) out of the worker processes, knows
every record's offset without a `tell()` round trip into C, and lets a record go out as
two buffered writes (a 32-byte prefix and the untouched JPEG bytes) without building the
packed string first. The bytes are exactly those of dmlc's `RecordIOWriter` behind
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
"""
import struct

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
IR_HEADER = struct.Struct("<IfQQ")          # mx.recordio._IR_FORMAT ('IfQQ') on little-endian
MAX_RECORD_BYTES = (1 << 29) - 1            # lrec keeps 29 bits for the length
_LREC_SHIFT = 29
# magic + lrec + IRHeader of an unsplit record, packed in one call.
_PREFIX = struct.Struct("<II" + IR_HEADER.format[1:])
_FRAME = struct.Struct("<II")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")


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


class ImageRecordWriter:
    """Appends image records to a binary file object; `offset` is where the next one starts.

    The file object should be buffered (records are written as a few small pieces)."""

    def __init__(self, f, offset=0):
        self.f = f
        self.offset = offset

    def write(self, label, record_id, record_id2, image):
        """Write `pack(IRHeader(0, label, record_id, record_id2), image)`; return its offset."""
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


def write_idx(f, offsets, first_key=0):
    """Write MXNet `.idx` lines `key\\toffset` for consecutive keys from `first_key`."""
    f.write("".join(f"{key}\t{offset}\n" for key, offset in enumerate(offsets, first_key)))
