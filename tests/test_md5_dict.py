"""MD5 dictionaries: counts against an independent count, split sides, file format, lookups."""
import collections
import copy
import hashlib
import json
import os
import subprocess
import sys

import bson
import numpy as np
import pytest

from data.bson_index import BsonIndex
from data.categories import CategoryMap
from data.md5_dict import (CountTable, ImageDigests, Md5Dictionary, build_dictionary, first_occurrences,
                           image_md5, product_hash)
from data.split_train_bson import Split
from helpers import make_products, write_bson


def products_with_repeats():
    """Train products where images and whole products recur, within and across categories."""
    docs = make_products(40, n_categories=5, seed=11)
    docs[3]["imgs"][0] = copy.deepcopy(docs[10]["imgs"][0])      # same image, categories 3 and 0
    docs[15]["imgs"] = copy.deepcopy(docs[5]["imgs"])             # same product, category 0 twice
    docs[16]["imgs"] = copy.deepcopy(docs[5]["imgs"])[::-1]       # same images reversed, category 1
    docs[20]["imgs"] = [copy.deepcopy(docs[20]["imgs"][0])] * 3  # one image three times in a product
    docs[21]["imgs"] = docs[20]["imgs"][:1]                       # product hash ignores repeats in a product
    return docs


def reference_counts(docs):
    """Independent counts, keyed like the reference: image hex MD5, and the product's sorted
    distinct hex MD5s joined by commas."""
    images, products = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for doc in docs:
        hexes = [hashlib.md5(img["picture"]).hexdigest() for img in doc["imgs"]]
        for h in hexes:
            images[h][doc["category_id"]] += 1
        products[",".join(sorted(set(hexes)))][doc["category_id"]] += 1
    return images, products


@pytest.fixture
def repeats_bson(tmp_path):
    docs = products_with_repeats()
    return write_bson(str(tmp_path / "train.bson"), docs), docs


def test_image_md5_and_product_hash_definitions():
    a, b, c = (image_md5(bytes([k]) * 100) for k in range(3))
    assert a == hashlib.md5(b"\x00" * 100).digest() and len(a) == 16
    assert product_hash([a, b]) == product_hash([b, a]) == product_hash([b, a, b])
    assert product_hash([a, b]) != product_hash([a, c]) and product_hash([a]) != product_hash([a, b])
    assert product_hash(np.frombuffer(a + b, np.uint8).reshape(2, 16)) == product_hash([a, b])


@pytest.mark.parametrize("workers", [1, 2])
def test_dictionary_counts_equal_an_independent_count(repeats_bson, workers, tmp_path):
    path, docs = repeats_bson
    index = BsonIndex.load_or_build(path)
    digests = ImageDigests.compute(index, workers=workers, progress=False)
    dictionary = Md5Dictionary.build(index, digests)
    images, products = reference_counts(docs)

    hits = dictionary.images.lookup([bytes.fromhex(h) for h in images])
    assert hits.found.all()
    assert [hits.counts_of(i) for i in range(len(hits))] == [dict(c) for c in images.values()]
    assert len(dictionary.images) == len(images)
    assert hits.total.tolist() == [sum(c.values()) for c in images.values()]

    # Product keys: one key per distinct reference string, with the same counts.
    keys = [product_hash([bytes.fromhex(h) for h in joined.split(",")]) for joined in products]
    hits = dictionary.products.lookup(keys)
    assert [hits.counts_of(i) for i in range(len(hits))] == [dict(c) for c in products.values()]
    assert len(dictionary.products) == len(products) == len(set(keys))
    summary = dictionary.summary()
    assert summary["image_keys_conflicting"] == sum(len(c) > 1 for c in images.values()) >= 1
    assert summary["product_keys_conflicting"] == sum(len(c) > 1 for c in products.values()) >= 1


def test_training_side_dictionary_does_not_know_validation_products(repeats_bson, tmp_path):
    path, docs = repeats_bson
    index = BsonIndex.load_or_build(path)
    split = Split.of_index(index, seed=5, ratio=0.3)
    split_path = split.save(str(tmp_path / "s.split.npz"))
    dictionary = build_dictionary(path, split_path, "train", digests_path=str(tmp_path / "d.npz"), progress=False)
    train_ids = set(split.train_ids.tolist())
    images, _ = reference_counts([d for d in docs if d["_id"] in train_ids])
    val_only = {image_md5(img["picture"]) for d in docs if d["_id"] not in train_ids for img in d["imgs"]} - \
        {bytes.fromhex(h) for h in images}
    assert val_only, "the fixture must have validation-only images"
    assert not dictionary.images.lookup(sorted(val_only)).found.any()
    hits = dictionary.images.lookup([bytes.fromhex(h) for h in images])
    assert [hits.counts_of(i) for i in range(len(hits))] == [dict(c) for c in images.values()]
    assert dictionary.meta["split"]["side"] == "train" and dictionary.meta["products"] == len(train_ids)


def test_saved_dictionary_loads_without_pickle_and_answers_the_same(repeats_bson, tmp_path):
    path, docs = repeats_bson
    dictionary = build_dictionary(path, digests_path=str(tmp_path / "d.npz"), progress=False)
    saved = dictionary.save(str(tmp_path / "train.md5.npz"))
    with np.load(saved, allow_pickle=False) as z:
        assert all(z[name].dtype != object for name in z.files)
    loaded = Md5Dictionary.load(saved)
    queries = [image_md5(img["picture"]) for d in docs for img in d["imgs"]] + [b"\xff" * 16]
    a, b = dictionary.images.lookup(queries), loaded.images.lookup(queries)
    for field in ("rows", "found", "n_categories", "total", "offsets", "categories", "counts"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert loaded.meta == dictionary.meta


def test_categories_keep_the_order_they_were_first_seen_in(repeats_bson, tmp_path):
    """`counts_of` is the reference's Counter filled in file order, order included, so that
    `Counter.most_common(1)` (the reference's majority) is the first of its tied maxima."""
    path, docs = repeats_bson
    dictionary = build_dictionary(path, digests_path=str(tmp_path / "d.npz"), progress=False)
    loaded = Md5Dictionary.load(dictionary.save(str(tmp_path / "train.md5.npz")))
    images, _ = reference_counts(docs)
    hits = loaded.images.lookup([bytes.fromhex(h) for h in images])
    assert [list(hits.counts_of(i).items()) for i in range(len(hits))] == [list(c.items()) for c in images.values()]
    # The fixture must tell first-seen order from the ascending order of category ids.
    assert any(list(c) != sorted(c) for c in images.values())
    order = hits.first_seen_order()
    for i, counter in enumerate(images.values()):
        lo, hi = hits.offsets[i], hits.offsets[i + 1]
        assert hits.categories[order[lo:hi]].tolist() == list(counter)
        assert hits.categories[order[lo:hi]][np.argmax(hits.counts[order[lo:hi]])] == counter.most_common(1)[0][0]


def test_a_dictionary_of_the_first_format_must_be_rebuilt(repeats_bson, tmp_path):
    path, _ = repeats_bson
    saved = build_dictionary(path, digests_path=str(tmp_path / "d.npz"), progress=False).save(
        str(tmp_path / "new.md5.npz"))
    with np.load(saved) as z:
        arrays = {name: z[name] for name in z.files if not name.endswith("_first_seen")}
    arrays["meta"] = np.frombuffer(json.dumps(dict(json.loads(arrays["meta"].tobytes()), version=1)).encode(), np.uint8)
    old = str(tmp_path / "old.md5.npz")
    np.savez(old, **arrays)
    with pytest.raises(ValueError, match=r"old\.md5\.npz.*version 1, expected 2: rebuild it"):
        Md5Dictionary.load(old)


def test_vectorised_lookup_answers(tmp_path):
    keys = [bytes([k]) * 16 for k in range(4)]
    table = CountTable.from_pairs(keys + [keys[1], keys[2]], [7, 8, 8, 8, 8, 9])
    hits = table.lookup([keys[2], b"\x09" * 16, keys[0], keys[1], keys[3]])
    assert hits.found.tolist() == [True, False, True, True, True]
    assert hits.n_categories.tolist() == [2, 0, 1, 1, 1]
    assert hits.total.tolist() == [2, 0, 1, 2, 1]
    assert hits.single_category().tolist() == [-1, -1, 7, 8, 8]
    assert hits.counts_of(0) == {8: 1, 9: 1} and hits.counts_of(1) == {}

    csv = tmp_path / "categories.csv"
    csv.write_text("category_id,category_level1,category_level2,category_level3\n9,a,b,c\n7,a,b,d\n8,a,e,f\n")
    dense = hits.dense(CategoryMap.from_csv(str(csv)))      # columns: class 0 = id 9, 1 = id 7, 2 = id 8
    assert dense.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 2], [0, 0, 1]]


def test_keys_sharing_their_first_eight_bytes_are_told_apart():
    prefix = b"\x42" * 8
    keys = [prefix + bytes([k]) * 8 for k in (5, 1, 9, 3)] + [b"\x41" * 16, b"\x43" * 16]
    table = CountTable.from_pairs(keys, np.arange(len(keys)))
    queries = keys + [prefix + b"\x04" * 8, prefix + b"\xff" * 8]
    found = table.lookup(queries)
    assert found.single_category().tolist() == list(range(len(keys))) + [-1, -1]
    assert first_occurrences(np.frombuffer(b"".join(keys + keys[:2]), np.uint8).reshape(-1, 16)).tolist() == \
        [True] * len(keys) + [False, False]


def test_digests_are_cached_and_recomputed_when_the_file_changes(tmp_path):
    path = write_bson(str(tmp_path / "train.bson"), make_products(10, seed=2))
    cache = str(tmp_path / "digests.npz")
    first = ImageDigests.load_or_compute(BsonIndex.load_or_build(path), cache, workers=1, progress=False)
    stamp = os.stat(cache).st_mtime_ns
    again = ImageDigests.load_or_compute(BsonIndex.load_or_build(path), cache, workers=1, progress=False)
    assert os.stat(cache).st_mtime_ns == stamp and np.array_equal(first.image_md5, again.image_md5)

    docs = make_products(12, seed=3)
    write_bson(path, docs)
    changed = ImageDigests.load_or_compute(BsonIndex.load_or_build(path), cache, workers=1, progress=False)
    assert [bytes(m) for m in changed.image_md5] == [image_md5(img["picture"]) for d in docs for img in d["imgs"]]


def test_official_sample_has_110_images_and_109_distinct_md5s(real_train_example, tmp_path):
    path = real_train_example
    dictionary = build_dictionary(path, progress=False)
    assert dictionary.meta["images"] == 110 and len(dictionary.images) == 109
    with open(path, "rb") as f:
        docs = list(bson.decode_file_iter(f))
    images, products = reference_counts(docs)
    assert dictionary.summary()["image_keys_single_category"] == sum(len(c) == 1 for c in images.values())
    assert len(dictionary.products) == len(products)


def test_a_test_file_has_no_categories_to_count(tmp_path):
    path = write_bson(str(tmp_path / "test.bson"), make_products(5, test=True))
    index = BsonIndex.load_or_build(path)
    with pytest.raises(ValueError, match="category"):
        Md5Dictionary.build(index, ImageDigests.compute(index, workers=1, progress=False))


def test_cli_builds_a_side_dictionary(repeats_bson, tmp_path):
    path, docs = repeats_bson
    split_path = Split.of_index(BsonIndex.load_or_build(path), seed=1).save(str(tmp_path / "A.split.npz"))
    out = tmp_path / "A_train.md5.npz"
    subprocess.run([sys.executable, "-m", "data.md5_dict", path, "--split", split_path, "--side", "train",
                    "--out", str(out), "--workers", "2"], check=True, capture_output=True)
    dictionary = Md5Dictionary.load(str(out))
    assert dictionary.meta["split"]["seed"] == 1
    assert dictionary.meta["products"] == len(Split.load(split_path).train_ids)
    help_text = subprocess.run([sys.executable, "-m", "data.md5_dict", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--side" in help_text.stdout
