"""How a product document of a Kaggle BSON file is laid out, described once, and the parsers
that read documents without decoding (or copying) their pictures.

A Kaggle BSON file is a plain concatenation of documents, each starting with its int32 length.
Kaggle wrote every product the same way (`KAGGLE_LAYOUT`, drawn to scale in the names below):

    length | _id (int32) | [category_id (int32)] | imgs | [category_id (int32)] | NUL
    imgs   = "\\x04imgs\\x00" | length | image "0" | ... | image "9" at most | NUL
    image  = "\\x03<digit>\\x00" | length | "\\x05picture\\x00" | picture length | subtype 0 | picture | NUL

(`category_id` follows `imgs` in train.bson and is absent from test.bson; files written by
other tools may put it first.) Every fixed part of it is a named `Element` or offset below;
the scalar parser (`kaggle_picture_spans`, one document: what `BsonIndex.pictures` and the
scan's single documents use) and the vectorised one (`kaggle_layout`, thousands of documents
of a buffer at once with numpy: the index pass and the conversion) both read them, so the two
cannot drift apart. Both check every length, type byte, key and terminator: a document they
accept decodes (pymongo) to exactly the pictures they locate. A document of any other layout
is checked element by element (`parse_document`, a generic BSON walker) and decoded with
pymongo.
"""
import dataclasses
import struct

import numpy as np

from data.rows import first_rows

NO_CATEGORY = -1              # the category id of a product without one (test.bson)
MIN_DOC_LEN = 5               # int32 length + terminating NUL: the empty document
MAX_DOC_LEN = 16 * 1024 * 1024  # MongoDB's own document size limit
LENGTH_PREFIX = 4             # the int32 length that starts a document, an array or an embedded document

INT32 = struct.Struct("<i")
INT64 = struct.Struct("<q")


@dataclasses.dataclass(frozen=True)
class Element:
    """A BSON element of the layout: its `header` (type byte, name, NUL), then a value whose
    first `value_size` bytes have a fixed size (an integer, or a length prefix)."""
    header: bytes
    value_size: int

    @property
    def value(self):
        """Offset of the value from the element's start."""
        return len(self.header)

    @property
    def size(self):
        """Bytes of the header and of the value's fixed part."""
        return len(self.header) + self.value_size


ID = Element(b"\x10_id\x00", 4)                  # int32 `_id`: every Kaggle document starts with it
ID64 = Element(b"\x12_id\x00", 8)                # int64 `_id`: valid BSON, not Kaggle's layout
CATEGORY = Element(b"\x10category_id\x00", 4)    # int32 `category_id`
IMGS = Element(b"\x04imgs\x00", LENGTH_PREFIX)   # the array of images: its length, then the images, then NUL
MAX_IMAGES = 10                                  # array keys "0".."9": one character each
IMAGE_KEYS = [bytes([0x03, 0x30 + k, 0]) for k in range(MAX_IMAGES)]     # image k: an embedded document
IMAGE = Element(IMAGE_KEYS[0], LENGTH_PREFIX)    # (the shape of every image key)
PICTURE = Element(b"\x05picture\x00", 5)         # binary: int32 length and subtype byte, then the bytes

AFTER_ID = LENGTH_PREFIX + ID.size               # where `category_id` or `imgs` starts
PICTURE_AT = IMAGE.size                          # where `picture` starts in an image
PICTURE_BYTES = PICTURE_AT + PICTURE.size        # where the picture's bytes start in an image
IMAGE_OVERHEAD = LENGTH_PREFIX + PICTURE.size + 1    # an image document's length less its picture's
MIN_IMAGE = len(IMAGE.header) + IMAGE_OVERHEAD   # an image element holding an empty picture
MIN_KAGGLE_LEN = AFTER_ID + IMGS.size + MIN_IMAGE + 2    # one empty picture; array and document NULs

_DOC_HEAD = struct.Struct(f"<i{len(ID.header)}si")                               # length, `_id`
_IMAGE_HEAD = struct.Struct(f"<{len(IMAGE.header)}si{len(PICTURE.header)}sib")   # key, length, picture


# --------------------------------------------------------------------------------------------
# Kaggle's layout: one document (scalar) or many (vectorised), from the description above
# --------------------------------------------------------------------------------------------
def kaggle_picture_spans(buf, start, length):
    """`(product_id, category_id, [(start, stop) of each picture's bytes])` of the document at
    buf[start:start+length] when it has Kaggle's layout, else None (the caller then decodes it).

    Every length, type byte, key and terminator is checked, so a document accepted here
    decodes (pymongo) to exactly these pictures; anything else returns None."""
    end = start + length - 1
    if length < MIN_KAGGLE_LEN or end >= len(buf) or buf[end] != 0:
        return None
    doc_len, id_element, product_id = _DOC_HEAD.unpack_from(buf, start)
    if doc_len != length or id_element != ID.header:
        return None
    category_id = NO_CATEGORY
    imgs = start + AFTER_ID
    if buf.startswith(CATEGORY.header, imgs):
        category_id = INT32.unpack_from(buf, imgs + CATEGORY.value)[0]
        imgs += CATEGORY.size
    if not buf.startswith(IMGS.header, imgs):
        return None
    array_end = imgs + IMGS.value + INT32.unpack_from(buf, imgs + IMGS.value)[0]     # one past the array's NUL
    if not imgs + IMGS.size + 1 <= array_end <= end or buf[array_end - 1] != 0:
        return None
    if array_end != end:
        if category_id != NO_CATEGORY or array_end + CATEGORY.size != end \
                or not buf.startswith(CATEGORY.header, array_end):
            return None
        category_id = INT32.unpack_from(buf, array_end + CATEGORY.value)[0]
    spans, pos, last = [], imgs + IMGS.size, array_end - 1
    while pos < last:
        number = len(spans)
        if number >= MAX_IMAGES or pos + MIN_IMAGE > last:
            return None
        key, doc_len, picture_key, picture_len, subtype = _IMAGE_HEAD.unpack_from(buf, pos)
        nxt = pos + IMAGE.value + doc_len
        if key != IMAGE_KEYS[number] or picture_key != PICTURE.header or subtype != 0 or picture_len < 0 \
                or doc_len != picture_len + IMAGE_OVERHEAD or nxt > last or buf[nxt - 1] != 0:
            return None
        spans.append((pos + PICTURE_BYTES, pos + PICTURE_BYTES + picture_len))
        pos = nxt
    if pos != last or not spans:
        return None
    return product_id, category_id, spans


class _Bytes:
    """Unaligned reads of many positions of a buffer at once: a byte, an int32, or whether a
    byte pattern starts there. Positions are clipped into the buffer, so a corrupt length only
    yields a failed check (np.take would copy the whole view)."""

    def __init__(self, buf):
        self.u8 = np.frombuffer(buf, np.uint8)
        self.i32 = np.ndarray((len(buf) - 3,), "<i4", buf, 0, (1,))
        self.u64 = np.ndarray((len(buf) - 7,), "<u8", buf, 0, (1,))
        self.last = len(buf) - 8

    def at(self, view, pos):
        return view[np.maximum(np.minimum(pos, self.last), 0)]

    def byte(self, pos):
        return self.at(self.u8, pos)

    def int32(self, pos):
        return self.at(self.i32, pos)

    def starts_with(self, pos, pattern):
        """Whether buf[pos:pos+len(pattern)] == pattern, compared as little-endian uint64 words."""
        ok = True
        for k in range(0, len(pattern), 8):
            piece = pattern[k:k + 8]
            mask = np.uint64((1 << 8 * len(piece)) - 1)
            ok = ok & ((self.at(self.u64, pos + k) & mask) == np.uint64(int.from_bytes(piece, "little")))
        return ok


def kaggle_layout(buf, starts, lengths):
    """Parse many documents of one buffer at once, as `kaggle_picture_spans` would (vectorised).

    Document `i` is buf[starts[i]:starts[i]+lengths[i]]. Returns `(ok, product_ids,
    category_ids, first, picture_starts, picture_lengths)`: `ok[i]` is True when document `i`
    has Kaggle's layout (same checks as `kaggle_picture_spans`); its image `j` is then
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
    b = _Bytes(buf)
    end = starts + lengths - 1
    ok = (lengths >= MIN_KAGGLE_LEN) & (starts >= 0) & (end < len(buf))
    ok &= (b.int32(starts) == lengths) & (b.byte(end) == 0) & b.starts_with(starts + LENGTH_PREFIX, ID.header)
    product_ids = b.int32(starts + LENGTH_PREFIX + ID.value).astype(np.int64)
    category_first = b.starts_with(starts + AFTER_ID, CATEGORY.header)
    imgs = np.where(category_first, starts + AFTER_ID + CATEGORY.size, starts + AFTER_ID)
    ok &= b.starts_with(imgs, IMGS.header)
    array_end = imgs + IMGS.value + b.int32(imgs + IMGS.value)
    ok &= (array_end >= imgs + IMGS.size + 1) & (array_end <= end) & (b.byte(array_end - 1) == 0)
    category_last = ~category_first & (array_end + CATEGORY.size == end) & b.starts_with(array_end, CATEGORY.header)
    ok &= (array_end == end) | category_last
    category_ids = np.where(category_first, b.int32(starts + AFTER_ID + CATEGORY.value),
                            np.where(category_last, b.int32(array_end + CATEGORY.value), NO_CATEGORY)).astype(np.int64)
    pos = imgs + IMGS.size
    counts = np.zeros(n, np.int64)
    spans = np.zeros((n, MAX_IMAGES, 2), np.int64)      # (start, length) of picture j of document i
    for number in range(MAX_IMAGES):
        sel = np.flatnonzero(ok & (pos < array_end - 1))
        if not len(sel):
            break
        p = pos[sel]
        doc_len, picture_len = b.int32(p + IMAGE.value), b.int32(p + PICTURE_AT + PICTURE.value)
        nxt = p + IMAGE.value + doc_len
        ok[sel] &= b.starts_with(p, IMAGE_KEYS[number]) & b.starts_with(p + PICTURE_AT, PICTURE.header) \
            & (b.byte(p + PICTURE_BYTES - 1) == 0) & (picture_len >= 0) \
            & (doc_len == picture_len + IMAGE_OVERHEAD) & (nxt <= array_end[sel] - 1) & (b.byte(nxt - 1) == 0)
        spans[sel, number, 0] = p + PICTURE_BYTES
        spans[sel, number, 1] = picture_len
        counts[sel] += 1
        pos[sel] = nxt
    ok &= (pos == array_end - 1) & (counts >= 1)
    found = np.arange(MAX_IMAGES) < counts[:, None]
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


# --------------------------------------------------------------------------------------------
# Any other layout: a generic BSON walker, then pymongo
# --------------------------------------------------------------------------------------------
# Fixed byte sizes of the BSON element types a product may hold; None = length-prefixed.
_FIXED_SIZES = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
                0x7F: 0, 0xFF: 0}


class BadDocument(Exception):
    """The document at hand is not a valid product; carries the reason."""

    def __init__(self, reason, product_id=None):
        super().__init__(reason)
        self.reason, self.product_id = reason, product_id


def _element_end(buf, pos, end):
    """Position after the BSON element starting at `pos` (type byte, key, value)."""
    etype = buf[pos]
    key_end = buf.find(b"\x00", pos + 1, end)
    if key_end < 0:
        raise BadDocument(f"unterminated element name at +{pos}")
    value = key_end + 1
    size = _FIXED_SIZES.get(etype)
    if size is not None:
        stop = value + size
    elif etype in (0x02, 0x0D, 0x0E):          # string, code, symbol: int32 size + bytes
        stop = value + 4 + INT32.unpack_from(buf, value)[0]
    elif etype in (0x03, 0x04):                # embedded document, array
        stop = value + INT32.unpack_from(buf, value)[0]
    elif etype == 0x05:                        # binary: int32 size + subtype + bytes
        stop = value + 5 + INT32.unpack_from(buf, value)[0]
    elif etype == 0x0B:                        # regex: two cstrings
        stop = buf.find(b"\x00", buf.find(b"\x00", value, end) + 1, end) + 1
    else:
        raise BadDocument(f"unknown BSON element type 0x{etype:02x}")
    if stop > end or stop <= value - 1:
        raise BadDocument("element runs past the end of its document")
    return buf[pos + 1:key_end], etype, value, stop


def _count_images(buf, start, stop):
    """Number of `{picture: binary}` documents in the `imgs` array spanning [start, stop)."""
    if INT32.unpack_from(buf, start)[0] != stop - start or buf[stop - 1] != 0:
        raise BadDocument("corrupt imgs array")
    n, pos = 0, start + LENGTH_PREFIX
    while pos < stop - 1:
        _, etype, value, pos = _element_end(buf, pos, stop - 1)
        if etype != 0x03:
            raise BadDocument(f"imgs[{n}] is not a document")
        doc_end = value + INT32.unpack_from(buf, value)[0]
        picture = value + LENGTH_PREFIX
        if buf[picture] != 0x05 or buf[picture + 1:picture + 9] != b"picture\x00" \
                or picture + PICTURE.size + INT32.unpack_from(buf, picture + 9)[0] > doc_end:
            raise BadDocument(f"imgs[{n}] has no binary 'picture'")
        n += 1
    return n




def _integer(buf, etype, value, key, product_id):
    """The int32 or int64 value of element `key`; any other BSON type is an error."""
    if etype == 0x10:
        return INT32.unpack_from(buf, value)[0]
    if etype == 0x12:
        return INT64.unpack_from(buf, value)[0]
    raise BadDocument(f"{key} has BSON type 0x{etype:02x}, not an integer", product_id)


def parse_document(buf, start, length):
    """(product_id, category_id, pictures) of the document at buf[start:start+length], one that
    `kaggle_layout` did not take: once its top-level elements are checked (bad ones raise
    `BadDocument` with the reason), its pictures' bytes as pymongo decodes them."""
    end = start + length - 1
    if buf[end] != 0:
        raise BadDocument("document does not end with NUL: not BSON")
    product_id, n_images, category_id = None, None, NO_CATEGORY
    pos = start + LENGTH_PREFIX
    try:
        while pos < end:
            key, etype, value, pos = _element_end(buf, pos, end)
            if key == b"_id":
                product_id = _integer(buf, etype, value, "_id", product_id)
            elif key == b"imgs":
                if etype != 0x04:
                    raise BadDocument("imgs is not an array", product_id)
                n_images = _count_images(buf, value, pos)
            elif key == b"category_id":
                category_id = _integer(buf, etype, value, "category_id", product_id)
        if pos != end:
            raise BadDocument("elements overrun the document", product_id)
    except BadDocument as e:
        e.product_id = e.product_id if e.product_id is not None else product_id
        raise
    except (struct.error, IndexError):
        raise BadDocument("corrupt document: not BSON", product_id) from None
    if product_id is None:
        raise BadDocument("document has no integer _id")
    if not n_images:
        raise BadDocument("product without images (imgs missing or empty)", product_id)
    return product_id, category_id, _decoded_pictures(bytes(buf[start:start + length]), n_images, product_id)


def _decoded_pictures(raw, n_images, product_id):
    """The pictures of a checked non-Kaggle-layout document, as pymongo decodes them (what
    the conversion writes)."""
    import bson
    try:
        pictures = [bytes(img["picture"]) for img in bson.decode(raw)["imgs"]]
    except (bson.errors.BSONError, KeyError, TypeError) as e:
        raise BadDocument(f"cannot decode the product: {e}", product_id) from None
    if len(pictures) != n_images:
        raise BadDocument("imgs holds something other than pictures", product_id)
    return pictures

