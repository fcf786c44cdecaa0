"""data.recordio: MXNet's RecordIO written and read without MXNet, byte for byte as MXNet
does, checked against MXNet's own writer and readers (split records included)."""
import os
import struct

import mxnet as mx
import numpy as np
import pytest

from data.recordio import (MAGIC_BYTES, ImageRecordWriter, RecordFileError, aligned_magic_counts, aligned_magic_words,
                           encode_record, iter_records, pack_header, read_headers, read_idx, read_payloads, unpack)
from helpers import (file_bytes, jpeg_bytes, read_sequentially, synthetic_pictures, synthetic_products,
                     write_pictures_rec)


# ---- the writer against MXNet's -----------------------------------------------------------

@pytest.mark.parametrize("case", ["plain", "aligned_magic", "two_magics", "unaligned_magic", "magic_at_end",
                                  "magic_in_header", "only_magic"])
@pytest.mark.parametrize("tail", [0, 1, 2, 3])
def test_record_bytes_equal_mxnet_recordio_writer(case, tail, tmp_path):
    image = bytearray(jpeg_bytes(5))[:400 + tail]
    record_id = 77
    if case == "aligned_magic":
        image[40:44] = MAGIC_BYTES                       # payload offset 24 + 40: aligned
    elif case == "two_magics":
        image[16:20] = MAGIC_BYTES
        image[100:104] = MAGIC_BYTES
    elif case == "unaligned_magic":
        image[41:45] = MAGIC_BYTES                       # not aligned: no split
    elif case == "magic_at_end":
        image[len(image) - tail - 4:len(image) - tail] = MAGIC_BYTES
    elif case == "magic_in_header":
        record_id = struct.unpack("<Q", MAGIC_BYTES * 2)[0]
    elif case == "only_magic":
        image = bytearray(MAGIC_BYTES * 3 + b"\x01" * tail)
    image = bytes(image)

    mx_path = str(tmp_path / "mx.rec")
    writer = mx.recordio.MXRecordIO(mx_path, "w")
    for label in (3.0, -1.0):
        writer.write(mx.recordio.pack(mx.recordio.IRHeader(0, label, record_id, 2), image))
    writer.close()

    ours = str(tmp_path / "ours.rec")
    with open(ours, "wb") as f:
        records = ImageRecordWriter(f)
        offsets = [records.write(label, record_id, 2, image) for label in (3.0, -1.0)]
    assert file_bytes(ours) == file_bytes(mx_path)
    assert offsets[1] == len(encode_record(pack_header(3.0, record_id, 2) + image)) and records.offset == os.path.getsize(ours)
    assert [r[3] for r in read_sequentially(ours)] == [image, image]


# ---- batches of records: headers by numpy, one magic-word scan -------------------------------

def test_write_many_writes_the_bytes_of_write_record_by_record(tmp_path):
    """Batched records (headers by numpy, one magic-word scan) equal `write` and MXNet's writer,
    into a file or a MemoryFile, with the magic word anywhere (even past the first scan chunk)."""
    from data.recordio import MemoryFile
    rng = np.random.RandomState(3)
    images = [bytes(rng.randint(0, 256, n, dtype=np.uint8)) for n in rng.randint(0, 9000, 120)]
    images[5] = b""
    with_magic = list(images)
    with_magic[90] = with_magic[90][:400] + MAGIC_BYTES + with_magic[90][404:]   # offset 400: aligned
    unaligned = list(images)
    unaligned[90] = unaligned[90][:401] + MAGIC_BYTES + unaligned[90][405:]
    labels = rng.randint(-1, 5, len(images)).astype(np.float32)
    ids = rng.randint(0, 2**40, len(images)).astype(np.int64)
    ids[7] = struct.unpack("<I", MAGIC_BYTES)[0]                  # the magic in a header word
    numbers = rng.randint(0, 4, len(images))
    for case, pictures, record_ids in (("plain", images, np.arange(len(images)) * 1000),
                                       ("aligned magic", with_magic, np.arange(len(images))),
                                       ("unaligned magic", unaligned, np.arange(len(images))),
                                       ("magic in a header", images, ids)):
        source = b"xyz" + b"".join(pictures)                         # pictures at odd alignments
        starts = 3 + np.concatenate([[0], np.cumsum([len(p) for p in pictures])[:-1]])
        lengths = [len(p) for p in pictures]
        expected = tmp_path / "one_by_one.rec"
        with open(expected, "wb") as f:
            one = ImageRecordWriter(f, offset=8)
            expected_offsets = [one.write(float(label), int(i), int(k), p)
                                for label, i, k, p in zip(labels, record_ids, numbers, pictures)]
        mx_path = str(tmp_path / "mx.rec")
        writer = mx.recordio.MXRecordIO(mx_path, "w")
        for label, i, k, p in zip(labels, record_ids, numbers, pictures):
            writer.write(mx.recordio.pack(mx.recordio.IRHeader(0, float(label), int(i), int(k)), p))
        writer.close()
        assert file_bytes(expected) == file_bytes(mx_path), case
        memory = MemoryFile()
        in_memory = ImageRecordWriter(memory, offset=8)
        offsets = in_memory.write_many(source, starts[:50], lengths[:50], labels[:50], record_ids[:50], numbers[:50])
        offsets = np.concatenate([offsets, in_memory.write_many(source, starts[50:], lengths[50:], labels[50:],
                                                                record_ids[50:], numbers[50:])])
        assert bytes(memory.view()) == file_bytes(expected)[0], case
        assert offsets.tolist() == expected_offsets and in_memory.offset == one.offset, case
        with open(tmp_path / "batched.rec", "wb") as f:
            batched = ImageRecordWriter(f, offset=8)
            assert batched.write_many(source, starts, lengths, labels, record_ids, numbers).tolist() == expected_offsets
        assert file_bytes(tmp_path / "batched.rec") == file_bytes(expected), case


# ---- finding the magic word --------------------------------------------------------------------

def test_magic_positions_finds_every_occurrence_at_any_alignment():
    from data.recordio import magic_positions
    rng = np.random.RandomState(1)
    for _ in range(300):
        n = rng.randint(1, 300)
        buf = bytearray(rng.randint(0, 256, n, dtype=np.uint8).tobytes())
        for _ in range(rng.randint(0, 5) if n >= 4 else 0):
            at = rng.randint(0, n - 3)
            buf[at:at + 4] = MAGIC_BYTES
        start = rng.randint(0, n)
        stop = rng.randint(start, n + 1)
        expected = [p for p in range(start, stop - 3) if buf[p:p + 4] == MAGIC_BYTES]
        assert magic_positions(buf, start, stop, chunk=int(rng.choice([2, 4, 16, 1 << 20]))).tolist() == expected


def test_aligned_magic_counts_equal_aligned_magic_words_of_each_image():
    """The index pass counts the magic words of a buffer's pictures with one scan."""
    rng = np.random.RandomState(2)
    for _ in range(100):
        images = [bytearray(rng.randint(0, 256, n, dtype=np.uint8).tobytes()) for n in rng.randint(0, 60, 8)]
        for image in images:
            for _ in range(rng.randint(0, 4) if len(image) >= 4 else 0):
                at = rng.randint(0, len(image) - 3)
                image[at:at + 4] = MAGIC_BYTES
        gaps = rng.randint(0, 6, len(images))
        buf, starts = bytearray(b"\x0a\x23" * 3), []
        for gap, image in zip(gaps, images):
            buf += MAGIC_BYTES[:gap % 5]                   # bytes between the images: never counted
            starts.append(len(buf))
            buf += image
        counts = aligned_magic_counts(bytes(buf), starts, [len(i) for i in images])
        assert counts.tolist() == [aligned_magic_words(bytes(i)) for i in images]


# ---- reading without MXNet -----------------------------------------------------------------

def test_reader_agrees_with_mxnet_also_on_split_records(tmp_path):
    """Pictures holding RecordIO's magic word at aligned places are written as split records:
    the framework-free reader joins them as MXNet's reader does."""
    labels, pids, numbers = synthetic_products(30, 4, 2)
    pictures = synthetic_pictures(labels, 2, 4)
    for i in range(0, len(pictures), 3):
        at = 4 * (len(pictures[i]) // 8)
        pictures[i] = pictures[i][:at] + MAGIC_BYTES + pictures[i][at + 4:]
    pictures[1] = MAGIC_BYTES * 3
    rec = write_pictures_rec(str(tmp_path / "x"), labels, pids, numbers, pictures)
    offsets = read_idx(str(tmp_path / "x.idx"))
    with open(rec, "rb") as f:
        raw = f.read()
    split = sum(struct.unpack_from("<II", raw, offset)[1] >> 29 == 1 for offset in offsets)
    assert split == len(range(0, len(pictures), 3)) + 1
    headers = read_headers(rec, offsets, chunk_bytes=4096)     # small chunks: many runs
    payloads = [buf[start:start + length].tobytes() for _, buf, starts, lengths in
                read_payloads(rec, offsets, chunk_bytes=4096) for start, length in zip(starts, lengths)]
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "x.idx"), rec, "r")
    for key in range(len(labels)):
        item = reader.read_idx(key)
        header, image = mx.recordio.unpack(item)
        assert (headers["label"][key], headers["id"][key], headers["id2"][key]) == (header.label, header.id,
                                                                                    header.id2)
        assert payloads[key] == item and image == pictures[key]
    reader.close()


@pytest.mark.parametrize("lines, message", [
    ("0\t0\n1\t100\nx\t200\n", r"x.idx: line 3 is not 'key<TAB>offset': 'x\\t200'"),
    ("0\t0\n1\t100\n2\n", r"x.idx: line 3 is not 'key<TAB>offset': '2'"),
    ("0\t0\n2\t100\n", r"x.idx: line 2 has key 2, expected 1"),
    ("0\t0\n1\t100\n2\t100\n", r"x.idx: line 3 has offset 100, which does not follow the previous record's"),
])
def test_malformed_index_lines_are_named(tmp_path, lines, message):
    (tmp_path / "x.idx").write_text(lines)
    with pytest.raises(RecordFileError, match=message):
        read_idx(str(tmp_path / "x.idx"))


def test_sequential_reader_and_unpack_agree_with_mxnet(tmp_path):
    """`iter_records` reads a `.rec` without its `.idx` as MXNet's `MXRecordIO.read` does, split
    records joined, at the offsets the `.idx` lists; `unpack` gives `mx.recordio.unpack`'s header."""
    labels, pids, numbers = synthetic_products(20, 4, 2)
    pictures = synthetic_pictures(labels, 2, 4)
    for i in range(0, len(pictures), 4):
        pictures[i] = pictures[i][:16] + MAGIC_BYTES + pictures[i][20:]
    rec = write_pictures_rec(str(tmp_path / "x"), labels, pids, numbers, pictures)
    ours = list(iter_records(rec))
    assert [offset for offset, _ in ours] == read_idx(str(tmp_path / "x.idx")).tolist()
    theirs = read_sequentially(rec)
    assert len(ours) == len(theirs) == len(pictures)
    for (_, payload), (label, record_id, record_id2, image) in zip(ours, theirs):
        (flag, *header), picture = unpack(payload)
        assert (flag, *header) == (0, label, record_id, record_id2) and picture == image
