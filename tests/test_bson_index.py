"""The BSON offset index: real and synthetic files, random access, and every kind of bad input."""
import os
import struct

import bson
import numpy as np
import pytest

from data.bson_index import BsonIndex, index_path_for
from data.bson_scan import scan_bson
from data.errors import BsonFormatError
from data.picture_facts import JPEG_PROBLEMS, RECORDIO_MAGIC_WORDS
from data.recordio import aligned_magic_words
from helpers import make_products, with_magic_words, write_bson


def decode_all(path):
    with open(path, "rb") as f:
        return list(bson.decode_file_iter(f))


@pytest.fixture(params=["real", "synthetic"])
def source(request, tmp_path):
    """(path, documents) of a clean train file: the official sample or a synthetic one."""
    if request.param == "real":
        path = request.getfixturevalue("real_train_example")
    else:
        path = write_bson(str(tmp_path / "synthetic.bson"), make_products(30, seed=3))
    return path, decode_all(path)


def test_official_sample_indexes_to_82_products_and_110_images(real_train_example):
    index = BsonIndex.build(real_train_example)
    summary = index.summary()
    assert (summary["products"], summary["images"], summary["categories"]) == (82, 110, 36)
    assert summary["images_per_product"] == {"1": 67, "2": 7, "3": 3, "4": 5}
    assert index.kind == "train"


def test_random_access_equals_sequential_decode(source):
    path, docs = source
    index = BsonIndex.build(path)
    assert len(index) == len(docs)
    assert [d["_id"] for d in docs] == index.product_ids.tolist()
    assert [len(d["imgs"]) for d in docs] == index.n_images.tolist()
    assert [d["category_id"] for d in docs] == index.category_ids.tolist()
    rng = np.random.RandomState(0)
    for pos in rng.permutation(len(docs)):
        assert index.read(pos) == docs[pos]
        assert index.get(docs[pos]["_id"]) == docs[pos]
    assert [doc for _, doc in index.iter_documents()] == docs
    assert [doc for _, doc in index.iter_documents(3, 11)] == docs[3:11]
    # Small read chunks exercise the run-splitting of iter_raw.
    assert [bson.decode(raw) for _, raw in index.iter_raw(chunk_bytes=10_000)] == docs
    np.testing.assert_array_equal(index.positions_of([d["_id"] for d in docs[::-1]]), np.arange(len(docs))[::-1])
    with pytest.raises(KeyError, match="no product with _id"):
        index.position_of(-5)


def test_partition_covers_every_product_once_with_balanced_bytes(source):
    index = BsonIndex.build(source[0])
    for n in (1, 2, 3, 7):
        parts = index.partition(n)
        assert len(parts) == n and parts[0][0] == 0 and parts[-1][1] == len(index)
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        sizes = [index.records["length"][a:b].sum() for a, b in parts]
        assert max(sizes) - min(sizes) <= 2 * index.records["length"].max()


def test_streaming_scan_yields_document_bytes(source):
    path, docs = source
    scanned = [bson.decode(bytes(raw)) for *_, raw in scan_bson(path, with_bytes=True)]
    assert scanned == docs


def test_index_is_cached_and_rebuilt_when_the_file_changes(tmp_path):
    path = write_bson(str(tmp_path / "train.bson"), make_products(10))
    built = BsonIndex.load_or_build(path)
    assert os.path.exists(index_path_for(path))
    loaded = BsonIndex.load(path)
    np.testing.assert_array_equal(loaded.records, built.records)
    write_bson(path, make_products(12, first_id=1000))
    os.utime(path, ns=(1, 1))
    assert BsonIndex.load(path) is None
    assert BsonIndex.load_or_build(path).product_ids[0] == 1000


def test_test_file_has_no_category(tmp_path):
    docs = make_products(8, test=True)
    index = BsonIndex.build(write_bson(str(tmp_path / "test.bson"), docs))
    assert index.kind == "test" and (index.category_ids == -1).all()
    assert index.summary()["images"] == sum(len(d["imgs"]) for d in docs)


# ---- bad input: each corruption on a copy of the real and of a synthetic file ----------------

def _spans(docs):
    """(offset, length) of each document of the clean file."""
    out, offset = [], 0
    for doc in docs:
        n = len(bson.encode(doc))
        out.append((offset, n))
        offset += n
    return out


def _corrupt(kind, docs, raw):
    """Corrupted bytes of a clean file, the offset and product the error must name, and the
    ids of the documents that must survive with skip_bad."""
    spans = _spans(docs)
    ids = [d["_id"] for d in docs]
    k = len(docs) // 2                       # a document in the middle
    off, n = spans[k]
    if kind == "truncated_last":
        last_off, last_n = spans[-1]
        return raw[:last_off + last_n // 2], last_off, ids[-1], ids[:-1], "truncated"
    if kind in ("negative_length", "too_small_length", "length_past_end"):
        value = {"negative_length": -7, "too_small_length": 3, "length_past_end": 15_000_000}[kind]
        bad = raw[:off] + struct.pack("<i", value) + raw[off + 4:]
        expect_pid = ids[k] if kind == "length_past_end" else None
        reason = {"negative_length": "negative", "too_small_length": "too small",
                  "length_past_end": "runs past the end"}[kind]
        return bad, off, expect_pid, ids[:k] + ids[k + 1:], reason
    if kind == "not_bson":
        garbage = bytes(range(7, 107))       # 100 bytes that are no document
        return raw[:off] + garbage + raw[off:], off, None, ids, "invalid length prefix|past the end|not BSON"
    if kind == "flipped_terminator":
        pos = off + n - 1
        return raw[:pos] + b"\x01" + raw[pos + 1:], off, None, ids[:k] + ids[k + 1:], "not BSON"
    doc = dict(docs[k])
    if kind == "no_imgs":
        del doc["imgs"]
    elif kind == "empty_imgs":
        doc["imgs"] = []
    elif kind == "no_category":
        del doc["category_id"]
    elif kind == "duplicate_id":
        doc["_id"] = ids[k - 3]
    reason = {"no_imgs": "without images", "empty_imgs": "without images",
              "no_category": "without category_id", "duplicate_id": "duplicate _id"}[kind]
    return raw[:off] + bson.encode(doc) + raw[off + n:], off, doc["_id"], ids[:k] + ids[k + 1:], reason


BAD_KINDS = ["truncated_last", "negative_length", "too_small_length", "length_past_end", "not_bson",
             "flipped_terminator", "no_imgs", "empty_imgs", "no_category", "duplicate_id"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_is_named_or_skipped_without_losing_good_documents(kind, source, tmp_path):
    path, docs = source
    with open(path, "rb") as f:
        raw = f.read()
    bad, offset, product_id, survivors, reason = _corrupt(kind, docs, raw)
    bad_path = str(tmp_path / f"{kind}.bson")
    with open(bad_path, "wb") as f:
        f.write(bad)

    with pytest.raises(BsonFormatError, match=reason) as err:
        BsonIndex.build(bad_path)
    assert err.value.path == bad_path and err.value.offset == offset
    assert str(offset) in str(err.value) and bad_path in str(err.value)
    if product_id is not None:
        assert err.value.product_id == product_id and f"product {product_id}" in str(err.value)

    index = BsonIndex.build(bad_path, skip_bad=True)
    assert index.product_ids.tolist() == survivors
    assert len(index.problems) >= 1 and index.problems[0]["offset"] == offset
    by_id = {d["_id"]: d for d in docs}
    for pos, pid in enumerate(survivors):
        if kind != "duplicate_id" or pid != product_id:
            assert index.read(pos) == by_id[pid]


def test_cached_index_with_problems_does_not_hide_them(tmp_path):
    docs = make_products(6)
    raw = b"".join(bson.encode(d) for d in docs)
    path = str(tmp_path / "t.bson")
    with open(path, "wb") as f:
        f.write(raw[:-10])
    assert len(BsonIndex.load_or_build(path, skip_bad=True)) == 5
    with pytest.raises(BsonFormatError, match="truncated"):
        BsonIndex.load_or_build(path)


def test_cli_prints_summary(tmp_path, capsys):
    from data.bson_index import main
    path = write_bson(str(tmp_path / "train.bson"), make_products(5))
    main([path])
    assert '"products": 5' in capsys.readouterr().out


def test_other_layouts_take_the_general_path(tmp_path):
    """int64 ids, another key order and extra keys are valid BSON products too."""
    from bson.int64 import Int64
    from helpers import jpeg_bytes
    docs = [
        {"category_id": Int64(1000000017), "_id": Int64(2**40), "imgs": [{"picture": jpeg_bytes(1)}]},
        {"_id": 7, "extra": "é", "imgs": [{"picture": jpeg_bytes(k)} for k in range(12)], "category_id": 5},
    ]
    index = BsonIndex.build(write_bson(str(tmp_path / "t.bson"), docs))
    assert index.product_ids.tolist() == [2**40, 7]
    assert index.n_images.tolist() == [1, 12] and index.category_ids.tolist() == [1000000017, 5]
    assert index.read(1) == docs[1]


# ---- pictures: lengths and RecordIO magic words, for planning the conversion -----------------

@pytest.mark.parametrize("chunk_bytes", [None, 40_000, 40_001, 40_002, 40_003])
def test_picture_lengths_and_magic_words_match_the_decoded_pictures(chunk_bytes, tmp_path, monkeypatch):
    """Also when the read buffer is small, so that magic words straddle its refills."""
    from bson.int64 import Int64
    docs = with_magic_words(make_products(120, seed=9), seed=3)
    docs[5]["_id"] = Int64(docs[5]["_id"])                         # other layouts: decoded
    docs[7]["imgs"] = docs[7]["imgs"] * 4
    path = write_bson(str(tmp_path / "magic.bson"), docs)
    if chunk_bytes:
        assert max(len(bson.encode(d)) for d in docs) < chunk_bytes
        monkeypatch.setattr("data.bson_scan.CHUNK_BYTES", chunk_bytes)
    index = BsonIndex.build(path)
    pictures = [img["picture"] for d in docs for img in d["imgs"]]
    assert index.picture_lengths.tolist() == [len(p) for p in pictures]
    magic = index.picture_fact(RECORDIO_MAGIC_WORDS, np.arange(len(pictures)))
    assert magic.tolist() == [aligned_magic_words(p) for p in pictures] and magic.sum() >= 40
    assert list(index.facts[RECORDIO_MAGIC_WORDS.name][0]) == sorted(index.facts[RECORDIO_MAGIC_WORDS.name][0])
    for pos in (5, 7, 60):
        rows = index.image_rows([pos])
        assert [pictures[r] for r in rows] == index.pictures(pos)


def test_dropped_duplicates_keep_the_pictures_of_the_others_aligned(tmp_path):
    docs = with_magic_words(make_products(30, seed=10), seed=4)
    docs[12]["_id"] = docs[10]["_id"]
    path = write_bson(str(tmp_path / "dup.bson"), docs)
    index = BsonIndex.build(path, skip_bad=True)
    kept = docs[:12] + docs[13:]
    pictures = [img["picture"] for d in kept for img in d["imgs"]]
    assert len(index) == len(kept) and index.picture_lengths.tolist() == [len(p) for p in pictures]
    assert index.picture_fact(RECORDIO_MAGIC_WORDS, np.arange(len(pictures))).tolist() == \
        [aligned_magic_words(p) for p in pictures]
    assert BsonIndex.load(index.save() and path) is not None


# ---- ids, damaged regions, pictures, kinds ---------------------------------------------------

@pytest.mark.parametrize("layout", ["int32", "int64"])
def test_a_negative_id_is_a_located_error_or_skipped(layout, tmp_path):
    """RecordIO headers hold product ids unsigned: a negative `_id` is bad input at index time,
    in the Kaggle layout (parsed many at a time) and in others (decoded one by one)."""
    from bson.int64 import Int64
    docs = make_products(8, seed=5)
    bad_id = -5 if layout == "int32" else Int64(-2**40)
    docs[3]["_id"] = bad_id
    path = write_bson(str(tmp_path / "neg.bson"), docs)
    offset = sum(len(bson.encode(d)) for d in docs[:3])
    with pytest.raises(BsonFormatError, match="negative _id") as err:
        BsonIndex.build(path)
    assert (err.value.path, err.value.offset, err.value.product_id) == (path, offset, bad_id)
    assert f"offset {offset}, product {bad_id}: negative _id" in str(err.value)
    index = BsonIndex.build(path, skip_bad=True)
    assert index.product_ids.tolist() == [d["_id"] for d in docs[:3] + docs[4:]]
    assert [(p["offset"], p["end"], p["lost_product_ids"]) for p in index.problems] == \
        [(offset, offset + len(bson.encode(docs[3])), [bad_id])]


def file_with_broken_length_prefixes(tmp_path, first, count):
    """A 30-product file whose documents first..first+count-1 have a broken length prefix (their
    `_id` still readable); returns (path, docs, offsets)."""
    docs = make_products(30, seed=3)
    encoded = [bson.encode(d) for d in docs]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).tolist()
    raw = bytearray(b"".join(encoded))
    for k in range(first, first + count):
        raw[offsets[k]:offsets[k] + 4] = struct.pack("<i", 3)
    path = tmp_path / "damaged.bson"
    path.write_bytes(bytes(raw))
    return str(path), docs, offsets


@pytest.mark.parametrize("count", [2, 9])
def test_a_damaged_region_is_reported_with_its_byte_range_and_every_product_lost(count, tmp_path):
    path, docs, offsets = file_with_broken_length_prefixes(tmp_path, 10, count)
    lost = [d["_id"] for d in docs[10:10 + count]]
    index = BsonIndex.build(path, skip_bad=True)
    assert index.product_ids.tolist() == [d["_id"] for d in docs[:10] + docs[10 + count:]]
    [problem] = index.problems
    assert (problem["offset"], problem["end"], problem["lost_product_ids"]) == (offsets[10], offsets[10 + count], lost)
    assert f"skipped bytes {offsets[10]}..{offsets[10 + count]}" in problem["reason"]
    assert "lost product ids " + ", ".join(map(str, lost)) in problem["reason"]
    with pytest.raises(BsonFormatError, match="too small") as err:
        BsonIndex.build(path)
    assert (err.value.offset, err.value.product_id) == (offsets[10], lost[0])


def test_a_length_prefix_that_covers_the_next_documents_loses_only_its_own(tmp_path):
    """A corrupt document whose length runs over the next eight documents (a plausible one follows
    it): the scan resumes at the first document start inside it, so those eight are kept."""
    docs = make_products(30, seed=3)
    encoded = [bson.encode(d) for d in docs]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).tolist()
    raw = bytearray(b"".join(encoded))
    raw[offsets[10]:offsets[10] + 4] = struct.pack("<i", offsets[19] - offsets[10])
    path = tmp_path / "long.bson"
    path.write_bytes(bytes(raw))
    index = BsonIndex.build(str(path), skip_bad=True)
    assert index.product_ids.tolist() == [d["_id"] for i, d in enumerate(docs) if i != 10]
    [problem] = index.problems
    assert (problem["offset"], problem["end"], problem["lost_product_ids"]) == \
        (offsets[10], offsets[11], [docs[10]["_id"]])


def test_random_bytes_over_two_documents_lose_them_with_the_readable_id(tmp_path):
    docs = make_products(20, seed=6)
    encoded = [bson.encode(d) for d in docs]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).tolist()
    raw = bytearray(b"".join(encoded))
    start, stop = offsets[5] + 100, offsets[6] + 50          # from inside document 5 into document 6
    raw[start:stop] = np.random.RandomState(1).randint(0, 256, stop - start, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.bson"
    path.write_bytes(bytes(raw))
    index = BsonIndex.build(str(path), skip_bad=True)
    assert index.product_ids.tolist() == [d["_id"] for i, d in enumerate(docs) if i not in (5, 6)]
    [problem] = index.problems
    assert (problem["offset"], problem["end"], problem["product_id"]) == (offsets[5], offsets[7], docs[5]["_id"])
    assert problem["lost_product_ids"] == [docs[5]["_id"]]       # document 6 lost its `_id` to the noise


def test_the_index_records_the_pictures_that_will_not_decode(tmp_path):
    """Checked as the pass reads them, in both layouts, realigned when a duplicate is dropped,
    saved and loaded; they are no problem of the BSON file."""
    from bson.int64 import Int64
    from data.jpeg import EMPTY, NOT_JPEG, TRUNCATED
    docs = make_products(12, seed=2)
    docs[2]["imgs"].append({"picture": b""})
    docs[4]["imgs"][0]["picture"] = docs[4]["imgs"][0]["picture"][:-300]
    docs[6]["_id"] = Int64(docs[6]["_id"])                       # decoded one by one
    docs[6]["imgs"].insert(0, {"picture": b"<html>404</html>"})
    docs[8]["_id"] = docs[7]["_id"]                               # a duplicate, dropped
    docs[9]["imgs"].append({"picture": b"\x00" * 64})
    path = write_bson(str(tmp_path / "pictures.bson"), docs)
    index = BsonIndex.build(path, skip_bad=True)
    kept = docs[:8] + docs[9:]
    expected = [(k, j) for k, d in enumerate(kept) for j, img in enumerate(d["imgs"])]
    codes = index.picture_fact(JPEG_PROBLEMS, np.arange(len(expected)))
    assert {expected[r]: int(c) for r, c in enumerate(codes) if c} == {
        (2, len(docs[2]["imgs"]) - 1): EMPTY, (4, 0): TRUNCATED, (6, 0): NOT_JPEG,
        (8, len(docs[9]["imgs"]) - 1): NOT_JPEG}
    first_seen = index.records["offset"][7]
    assert [p["reason"] for p in index.problems] == [f"duplicate _id (first seen at offset {first_seen})"]
    assert index.summary()["undecodable_pictures"] == 4
    index.save()
    np.testing.assert_array_equal(BsonIndex.load(path).picture_fact(JPEG_PROBLEMS, np.arange(len(expected))), codes)


def test_a_cached_index_built_for_another_kind_is_not_taken_for_an_automatic_one(tmp_path):
    """`--kind test` on a train file keeps its category ids but records kind "test": an automatic
    request must not reuse it (it would pass the file for a test file), a "test" one may."""
    path = write_bson(str(tmp_path / "train.bson"), make_products(6))
    forced = BsonIndex.load_or_build(path, kind="test")
    assert forced.kind == "test" and forced.labelled
    assert BsonIndex.load_or_build(path, kind="test").built_as == "test"
    automatic = BsonIndex.load_or_build(path)
    assert (automatic.kind, automatic.built_as) == ("train", "auto")
    assert BsonIndex.load_or_build(path, kind="train").built_as == "auto"     # served by the automatic one
    test_file = write_bson(str(tmp_path / "test.bson"), make_products(4, test=True))
    assert not BsonIndex.load_or_build(test_file).labelled
