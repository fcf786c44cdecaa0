"""BSON -> indexed RecordIO: every image once with its label, filters, order, MXNet readers,
bad input, worker-count independence and resuming after a kill."""
import copy
import glob
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time

import bson
import cv2
import mxnet as mx
import numpy as np
import pytest

from data.bson_index import BsonIndex
from data.bson2rec import ConvertOptions, convert, plan_parts, shuffled_order
from data.categories import CategoryMap
from data.errors import DataInputError, StaleIndexError
from data.md5_dict import build_dictionary
from data.picture_facts import RECORDIO_MAGIC_WORDS
from data.recordio import MAGIC_BYTES, aligned_magic_words, record_paths
from data.split_train_bson import Split
from helpers import (CATEGORIES, file_bytes, jpeg_bytes, make_products, read_records, read_sequentially, with_magic_words,
                     write_bson, write_categories)

def expected_images(docs, category_map=None):
    """{(product_id, image_number): (label, jpeg)} of every image of `docs`."""
    return {(d["_id"], k): (float(category_map.class_of(d["category_id"])) if category_map else -1.0,
                            img["picture"])
            for d in docs for k, img in enumerate(d["imgs"])}


@pytest.fixture
def csv_path(tmp_path):
    return write_categories(tmp_path / "category_names.csv")


@pytest.fixture
def train_bson(tmp_path):
    docs = make_products(60, seed=4)
    return write_bson(str(tmp_path / "train.bson"), docs), docs


def small_options(csv_path, **kw):
    return ConvertOptions(categories=csv_path, workers=kw.pop("workers", 2), part_mb=kw.pop("part_mb", 0.02), **kw)


# ---- every image exactly once, with its label and untouched bytes ---------------------------

def test_every_image_lands_in_exactly_one_record_with_its_label(train_bson, csv_path, tmp_path):
    path, docs = train_bson
    rec = str(tmp_path / "out" / "all.rec")
    report = convert(path, rec, small_options(csv_path), progress=False)
    records = read_records(rec)
    expected = expected_images(docs, CategoryMap.from_csv(csv_path))
    assert len(records) == len(expected) == report["records"] == report["images"]["written"]
    assert {(pid, k): (label, image) for label, pid, k, image in records} == expected
    assert read_sequentially(rec) == records, "the .rec must also read without its .idx"
    assert report["products"]["written"] == len(docs) and report["skipped"] == report["index_problems"] == []
    histogram = np.bincount([int(r[0]) for r in records], minlength=len(CATEGORIES))
    assert report["class_histogram"] == histogram.tolist()
    assert report["rec_bytes"] == os.path.getsize(rec)
    assert not glob.glob(str(tmp_path / "out" / ".*")), "no parts or temporary files are left behind"


def test_split_sides_partition_the_images_and_keep_their_order(train_bson, csv_path, tmp_path):
    path, docs = train_bson
    split_path = Split.of_index(BsonIndex.load_or_build(path), seed=1, ratio=0.2).save(str(tmp_path / "B.split.npz"))
    sides = {}
    for side in ("train", "val"):
        rec = str(tmp_path / f"B_{side}.rec")
        convert(path, rec, small_options(csv_path, split=split_path, side=side), progress=False)
        sides[side] = read_records(rec)
    products = {side: [r[1] for r in records] for side, records in sides.items()}
    assert not set(products["train"]) & set(products["val"])
    all_records = {(pid, k): (label, image) for records in sides.values() for label, pid, k, image in records}
    assert all_records == expected_images(docs, CategoryMap.from_csv(csv_path))
    assert len(sides["train"]) + len(sides["val"]) == len(all_records)

    file_order = [d["_id"] for d in docs]
    assert products["val"] == sorted(products["val"], key=file_order.index), "validation keeps file order"
    train_products = list(dict.fromkeys(products["train"]))
    assert train_products != sorted(train_products, key=file_order.index), "training is shuffled"
    runs = [pid for i, pid in enumerate(products["train"]) if i == 0 or products["train"][i - 1] != pid]
    assert runs == train_products, "the images of a product stay together"
    for side in ("train", "val"):
        numbers = [(r[1], r[2]) for r in sides[side]]
        assert numbers == sorted(numbers, key=lambda n: (products[side].index(n[0]), n[1]))


def test_test_file_keeps_bytes_order_and_gets_label_minus_one(tmp_path):
    docs = make_products(25, test=True, seed=9)
    path = write_bson(str(tmp_path / "test.bson"), docs)
    rec = str(tmp_path / "test.rec")
    report = convert(path, rec, ConvertOptions(workers=2, part_mb=0.02), progress=False)
    records = read_records(rec)
    assert [(r[1], r[2]) for r in records] == [(d["_id"], k) for d in docs for k in range(len(d["imgs"]))]
    assert all(r[0] == -1.0 for r in records)
    assert [r[3] for r in records] == [img["picture"] for d in docs for img in d["imgs"]]
    assert report["kind"] == "test" and "class_histogram" not in report


# ---- order, determinism, worker independence ------------------------------------------------

def test_output_is_byte_identical_whatever_the_number_of_workers(train_bson, csv_path, tmp_path):
    path, _ = train_bson
    outputs = []
    for workers in (1, 2):
        rec = str(tmp_path / f"w{workers}" / "A_train.rec")
        convert(path, rec, small_options(csv_path, workers=workers), progress=False)
        outputs.append(file_bytes(*record_paths(rec)))
    assert outputs[0] == outputs[1]

    other_seed = str(tmp_path / "seed" / "A_train.rec")
    convert(path, other_seed, small_options(csv_path, seed=1), progress=False)
    assert [r[1:3] for r in read_records(other_seed)] != [r[1:3] for r in read_records(str(tmp_path / "w1" / "A_train.rec"))]


def test_no_shuffle_keeps_file_order(train_bson, csv_path, tmp_path):
    path, docs = train_bson
    rec = str(tmp_path / "ordered.rec")
    convert(path, rec, small_options(csv_path, shuffle=False), progress=False)
    assert [(r[1], r[2]) for r in read_records(rec)] == [(d["_id"], k) for d in docs for k in range(len(d["imgs"]))]


def test_parts_cover_the_order_in_balanced_consecutive_ranges():
    lengths = np.random.RandomState(0).randint(1_000, 40_000, 500)
    parts = plan_parts(lengths, 1_000_000)
    assert parts[0][0] == 0 and parts[-1][1] == 500
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [lengths[a:b].sum() for a, b in parts]
    assert len(parts) == -(-lengths.sum() // 1_000_000) and max(sizes) - min(sizes) < 2 * lengths.max()
    assert plan_parts(np.array([], np.int64), 10) == []
    assert plan_parts(lengths[:5], 1_000_000) == [(0, 5)]


# ---- filters ---------------------------------------------------------------------------------

def products_with_duplicate_images():
    docs = make_products(30, seed=6)
    docs[7]["imgs"][0] = copy.deepcopy(docs[2]["imgs"][0])                   # across products
    docs[9]["imgs"] = [copy.deepcopy(docs[9]["imgs"][0])] * 2 + docs[9]["imgs"][1:]   # within a product
    docs[12]["imgs"] = copy.deepcopy(docs[4]["imgs"][:1])                     # a product left without images
    return docs


def test_unique_md5_keeps_the_first_occurrence_of_each_image(tmp_path, csv_path):
    docs = products_with_duplicate_images()
    path = write_bson(str(tmp_path / "train.bson"), docs)
    rec = str(tmp_path / "C_train.rec")
    report = convert(path, rec, small_options(csv_path, unique_md5=True), progress=False)
    records = read_records(rec)
    md5s = [hashlib.md5(r[3]).digest() for r in records]
    assert len(md5s) == len(set(md5s))
    first_seen = {}
    for d in docs:
        for k, img in enumerate(d["imgs"]):
            first_seen.setdefault(hashlib.md5(img["picture"]).digest(), (d["_id"], k))
    assert sorted((r[1], r[2]) for r in records) == sorted(first_seen.values())
    n_images = sum(len(d["imgs"]) for d in docs)
    assert report["images"]["filtered"]["duplicate_md5"] == n_images - len(first_seen) == 3
    assert report["products"]["all_images_filtered"] == 1 and report["products"]["written"] == len(docs) - 1


def test_single_label_and_per_category_cap_filters(tmp_path, csv_path):
    docs = products_with_duplicate_images()
    docs[3]["imgs"][0] = copy.deepcopy(docs[5]["imgs"][0])   # one more image shared by two categories
    path = write_bson(str(tmp_path / "train.bson"), docs)
    dict_path = build_dictionary(path, progress=False).save(str(tmp_path / "train.md5.npz"))
    rec = str(tmp_path / "filtered.rec")
    report = convert(path, rec, small_options(csv_path, single_label_md5=dict_path), progress=False)
    categories_of = {}
    for d in docs:
        for img in d["imgs"]:
            categories_of.setdefault(hashlib.md5(img["picture"]).digest(), set()).add(d["category_id"])
    single = {(d["_id"], k) for d in docs for k, img in enumerate(d["imgs"])
              if len(categories_of[hashlib.md5(img["picture"]).digest()]) == 1}
    assert {(r[1], r[2]) for r in read_records(rec)} == single
    n_images = sum(len(d["imgs"]) for d in docs)
    assert report["images"]["filtered"]["multi_label_md5"] == n_images - len(single) >= 2

    assert report["images"]["filtered"]["unseen_md5"] == 0      # the dictionary holds every MD5 of its file

    cap = 4
    capped = str(tmp_path / "capped.rec")
    report = convert(path, capped, small_options(csv_path, max_per_category=cap, shuffle=False), progress=False)
    category_map = CategoryMap.from_csv(csv_path)
    kept, expected = [(r[1], r[2]) for r in read_records(capped)], []
    per_class = dict.fromkeys(range(len(CATEGORIES)), 0)
    for d in docs:
        for k in range(len(d["imgs"])):
            c = category_map.class_of(d["category_id"])
            if per_class[c] < cap:
                expected.append((d["_id"], k))
                per_class[c] += 1
    assert kept == expected and report["class_histogram"] == [cap] * len(CATEGORIES)


def test_single_label_filter_drops_md5s_the_dictionary_does_not_hold(tmp_path, csv_path):
    """As the reference's filter: an image stays when its MD5 has exactly one category in
    the dictionary (here of another file, as a training side's is for validation)."""
    train = make_products(20, seed=6)
    train[5]["imgs"][0] = copy.deepcopy(train[1]["imgs"][0])              # categories 1 and 0
    val = make_products(10, seed=7, first_id=1000)
    val[0]["imgs"][0] = copy.deepcopy(train[2]["imgs"][0])                # one category
    val[1]["imgs"][0] = copy.deepcopy(train[1]["imgs"][0])                # two categories
    dict_path = build_dictionary(write_bson(str(tmp_path / "train.bson"), train), progress=False).save(
        str(tmp_path / "train.md5.npz"))
    val_path = write_bson(str(tmp_path / "val.bson"), val)
    categories_of = {}
    for d in train:
        for img in d["imgs"]:
            categories_of.setdefault(hashlib.md5(img["picture"]).digest(), set()).add(d["category_id"])
    known = {(d["_id"], k): len(categories_of.get(hashlib.md5(img["picture"]).digest(), ()))
             for d in val for k, img in enumerate(d["imgs"])}
    assert sorted(set(known.values())) == [0, 1, 2]

    kept = {}
    for keep_unseen in (False, True):
        rec = str(tmp_path / f"val-{keep_unseen}.rec")
        options = small_options(csv_path, single_label_md5=dict_path, keep_unseen_md5=keep_unseen, shuffle=False)
        kept[keep_unseen] = (convert(val_path, rec, options, progress=False)["images"]["filtered"],
                             {(r[1], r[2]) for r in read_records(rec)})
    filtered, records = kept[False]
    assert records == {image for image, n in known.items() if n == 1}
    assert filtered == {"multi_label_md5": 1, "unseen_md5": sum(n == 0 for n in known.values())}
    filtered, records = kept[True]
    assert records == {image for image, n in known.items() if n <= 1}
    assert filtered == {"multi_label_md5": 1}


# ---- the official sample and MXNet's readers ------------------------------------------------

@pytest.fixture
def official(real_train_example, real_category_names, tmp_path):
    """The official sample converted as DATASET_A's way (all products) and DATASET_C's way."""
    path = real_train_example
    out = {}
    for name, unique in (("A", False), ("C", True)):
        rec = str(tmp_path / f"{name}.rec")
        out[name] = convert(path, rec, ConvertOptions(categories=real_category_names, unique_md5=unique,
                                                      workers=2, part_mb=0.1), progress=False), rec
    return path, out


def test_official_sample_converts_to_110_records_109_without_repeated_md5(official, real_category_names):
    path, out = official
    assert out["A"][0]["records"] == 110 and out["C"][0]["records"] == 109
    with open(path, "rb") as f:
        docs = list(bson.decode_file_iter(f))
    category_map = CategoryMap.from_csv(real_category_names)
    records = read_records(out["A"][1])
    assert {(pid, k): (label, image) for label, pid, k, image in records} == expected_images(docs, category_map)
    for _, _, _, image in records:
        decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (180, 180, 3)
    assert len({hashlib.md5(r[3]).digest() for r in read_records(out["C"][1])}) == 109


def test_official_sample_converts_to_the_same_bytes_as_ever(official):
    """The `.rec` and `.idx` of the official sample (default options: shuffled) are the bytes
    the converter wrote when its modules were reorganised (issue 12): a refactoring of the
    data layer must not move one."""
    digests = [hashlib.sha256(data).hexdigest() for data in file_bytes(*record_paths(official[1]["A"][1])[:2])]
    assert digests == ["50ad5c599795ed90e7d3e5c8d8f2ea2afb8beab12ab1c9541386ad2f33177f23",
                       "b4b66eed7f3df54c203abd46f94d04ef743aa2bab23df77aeaff90954b9f8a3b"]


def test_image_record_iter_reads_the_output_with_a_global_shuffle(official):
    _, out = official
    report, rec = out["A"]
    records = read_records(rec)
    iterator = mx.io.ImageRecordIter(path_imgrec=rec, path_imgidx=record_paths(rec)[1], data_shape=(3, 180, 180),
                                     batch_size=10, shuffle=True, seed=3, round_batch=False)
    labels = []
    for batch in iterator:
        assert batch.data[0].shape == (10, 3, 180, 180)
        labels += batch.label[0].asnumpy()[:10 - batch.pad].tolist()
    file_labels = [r[0] for r in records]
    assert sorted(labels) == sorted(file_labels) and labels != file_labels

    dataset = mx.gluon.data.vision.ImageRecordDataset(rec)
    image, label = dataset[5]
    assert len(dataset) == 110 and image.shape == (180, 180, 3) and label == records[5][0]


# ---- bad input -------------------------------------------------------------------------------

def corrupt(kind, docs):
    """(file bytes, index of the bad product in docs, expected reason)."""
    docs = copy.deepcopy(docs)
    k = len(docs) // 2
    encoded = [bson.encode(d) for d in docs]
    if kind == "truncated":
        return b"".join(encoded)[:-25], len(docs) - 1, "truncated"
    if kind == "corrupt":
        bad = bytearray(encoded[k])
        bad[-1] = 1
        encoded[k] = bytes(bad)
        return b"".join(encoded), k, "not BSON"
    if kind == "no_imgs":
        del docs[k]["imgs"]
        reason = "without images"
    elif kind == "no_category":
        del docs[k]["category_id"]
        reason = "without category_id"
    elif kind == "duplicate_id":
        docs[k]["_id"] = docs[k - 2]["_id"]
        reason = "duplicate _id"
    elif kind == "unknown_category":
        docs[k]["category_id"] = 42
        reason = "category_id 42 is not in"
    elif kind == "bad_jpeg":
        docs[k]["imgs"].append({"picture": b"this is not a JPEG" * 20})
        reason = r"imgs\[\d\] is not a decodable JPEG"
    encoded[k] = bson.encode(docs[k])
    return b"".join(encoded), k, reason


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "no_imgs", "no_category", "duplicate_id",
                                  "unknown_category", "bad_jpeg"])
def test_bad_input_stops_with_a_located_error_or_is_skipped_and_reported(kind, tmp_path, csv_path):
    docs = make_products(16, seed=8)
    raw, k, reason = corrupt(kind, docs)
    path = str(tmp_path / "bad.bson")
    with open(path, "wb") as f:
        f.write(raw)
    offset = sum(len(bson.encode(d)) for d in docs[:k])
    options = small_options(csv_path, verify_jpeg=kind == "bad_jpeg", shuffle=False)
    with pytest.raises(DataInputError, match=reason) as error:
        convert(path, str(tmp_path / "stop.rec"), options, progress=False)
    assert error.value.path == path and error.value.offset == offset
    assert f"offset {offset}" in str(error.value) and path in str(error.value)
    if kind not in ("truncated", "corrupt"):
        assert error.value.product_id == (docs[k - 2]["_id"] if kind == "duplicate_id" else docs[k]["_id"])
    assert not os.path.exists(tmp_path / "stop.rec")

    rec = str(tmp_path / "skip.rec")
    report = convert(path, rec, small_options(csv_path, verify_jpeg=kind == "bad_jpeg", shuffle=False,
                                              skip_bad=True), progress=False)
    problems = report["index_problems"] + report["skipped"]
    assert len(problems) == 1 and problems[0]["offset"] == offset and problems[0]["path"] == path
    written = {(r[1], r[2]) for r in read_records(rec)}
    good = {(d["_id"], n) for i, d in enumerate(docs) for n in range(len(d["imgs"])) if i != k}
    if kind == "bad_jpeg":
        good |= {(docs[k]["_id"], n) for n in range(len(docs[k]["imgs"]))}   # only the added image is dropped
        assert report["images"]["skipped_bad"] == 1
    assert written == good


def test_a_file_changed_behind_its_index_is_detected(tmp_path):
    docs = make_products(6, seed=2)
    path = write_bson(str(tmp_path / "train.bson"), docs)
    index = BsonIndex.build(path)
    assert index.pictures(3) == [img["picture"] for img in docs[3]["imgs"]]
    changed = copy.deepcopy(docs)
    changed[3]["_id"] += 1000
    write_bson(path, changed)                      # same layout, another id: the index is stale
    with pytest.raises(DataInputError, match="differs from its index entry") as error:
        index.pictures(3)
    assert error.value.offset == sum(len(bson.encode(d)) for d in docs[:3]) and error.value.product_id == docs[3]["_id"]


def test_cli_reports_bad_input_on_stderr_and_fails(tmp_path, csv_path):
    docs = make_products(6)
    docs[2]["category_id"] = 77
    path = write_bson(str(tmp_path / "train.bson"), docs)
    result = subprocess.run([sys.executable, "-m", "data.bson2rec", path, "--categories", csv_path,
                             "--out", str(tmp_path / "x.rec")], capture_output=True, text=True)
    assert result.returncode != 0
    assert f"{path}: offset {len(bson.encode(docs[0])) + len(bson.encode(docs[1]))}, product {docs[2]['_id']}: " \
           f"category_id 77 is not in" in result.stderr


# ---- resuming and re-running -----------------------------------------------------------------

def test_conversion_killed_midway_resumes_to_byte_identical_output(tmp_path, csv_path):
    path = write_bson(str(tmp_path / "train.bson"), make_products(500, seed=12))
    BsonIndex.load_or_build(path)
    command = [sys.executable, "-m", "data.bson2rec", path, "--categories", csv_path, "--verify-jpeg",
               "--part-mb", "0.01", "--workers", "2"]
    reference = str(tmp_path / "clean" / "A_train.rec")
    subprocess.run(command + ["--out", reference], check=True, capture_output=True)

    rec = str(tmp_path / "killed" / "A_train.rec")
    process = subprocess.Popen(command + ["--out", rec], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    parts = str(tmp_path / "killed" / ".A_train.parts" / "part-*.done")
    deadline = time.time() + 60
    while len(glob.glob(parts)) < 8 and process.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not os.path.exists(rec), "the run must be killed before it finishes"
    n_done = len(glob.glob(parts))
    assert n_done >= 8

    result = subprocess.run(command + ["--out", rec], check=True, capture_output=True, text=True)
    assert "resuming" in result.stderr
    assert file_bytes(*record_paths(rec)) == file_bytes(*record_paths(reference))
    assert not os.path.exists(tmp_path / "killed" / ".A_train.parts")


def test_finished_output_is_left_alone_unless_forced_or_inputs_change(train_bson, csv_path, tmp_path):
    path, _ = train_bson
    rec = str(tmp_path / "A.rec")
    convert(path, rec, small_options(csv_path), progress=False)
    stamp = os.stat(rec).st_mtime_ns
    convert(path, rec, small_options(csv_path), progress=False)
    assert os.stat(rec).st_mtime_ns == stamp
    convert(path, rec, small_options(csv_path, force=True), progress=False)
    assert os.stat(rec).st_mtime_ns != stamp
    stamp = os.stat(rec).st_mtime_ns
    report = convert(path, rec, small_options(csv_path, shuffle=False), progress=False)
    assert os.stat(rec).st_mtime_ns != stamp and report["inputs"]["shuffle"] is False


def test_cli_help_lists_the_options():
    result = subprocess.run([sys.executable, "-m", "data.bson2rec", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--split", "--unique-md5", "--single-label-md5", "--keep-unseen-md5", "--max-per-category",
                   "--skip-bad", "--workers", "--shuffle-block-kb"):
        assert option in result.stdout


# ---- the shell script --------------------------------------------------------------------------

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "shell", "bson2rec_trainval.sh")


def test_shell_script_builds_every_dataset_and_stops_on_the_first_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    train_docs, test_docs = make_products(80, seed=21), make_products(15, test=True, seed=22, first_id=10_000)
    write_bson(str(data / "train.bson"), train_docs)
    write_bson(str(data / "test.bson"), test_docs)
    write_categories(data / "category_names.csv")
    env = dict(os.environ, PYTHON=sys.executable, WORKERS="2")
    result = subprocess.run(["sh", SCRIPT, "--data-dir", str(data), "--rec-dir", str(tmp_path / "rec")],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rec = tmp_path / "rec"
    names = [f"{d}_{s}" for d in "ABC" for s in ("train", "val")] + ["test"]
    reports = {n: json.loads((rec / f"{n}.report.json").read_text()) for n in names}
    for name in names:
        assert len(read_records(str(rec / f"{name}.rec"))) == reports[name]["records"] > 0
    n_train_images = sum(len(d["imgs"]) for d in train_docs)
    for dataset in "AB":
        assert reports[f"{dataset}_train"]["records"] + reports[f"{dataset}_val"]["records"] == n_train_images
        assert reports[f"{dataset}_val"]["products"]["written"] == int(80 * 0.05)
    assert reports["test"]["records"] == sum(len(d["imgs"]) for d in test_docs)
    assert {p.name for p in rec.glob("*.npz")} == {"A.split.npz", "B.split.npz", "A_train.md5.npz",
                                                    "B_train.md5.npz", "train.md5.npz", "train.bson.image_md5.npz"}
    assert "bson2rec_trainval: done" in result.stderr

    write_categories(data / "category_names.csv", CATEGORIES[1:])       # a category goes missing
    failed = subprocess.run(["sh", SCRIPT, "--rec-dir", str(tmp_path / "rec2")], capture_output=True, text=True,
                            env=dict(env, DATA_DIR=str(data)))
    assert failed.returncode != 0
    assert "is not in" in failed.stderr and "step failed" in failed.stderr
    assert not (tmp_path / "rec2" / "test.rec").exists(), "the script stops at the first error"


# ---- the fast path: pictures located without decoding, records written in batches -----------

def layout_variants():
    """Products of many BSON layouts: Kaggle's and others that must take the decoding path."""
    from bson.binary import Binary
    from bson.int64 import Int64
    pictures = [jpeg_bytes(k)[:300 + k] for k in range(12)]
    return [
        {"_id": 1, "imgs": [{"picture": pictures[0]}], "category_id": 1000000000},              # Kaggle train
        {"_id": 2, "imgs": [{"picture": p} for p in pictures[:4]]},                             # Kaggle test
        {"_id": 3, "category_id": 1000000017, "imgs": [{"picture": p} for p in pictures[1:3]]},  # category first
        {"_id": 4, "imgs": [{"picture": b""}, {"picture": pictures[3]}], "category_id": 7},      # empty picture
        {"_id": Int64(5), "imgs": [{"picture": pictures[4]}], "category_id": 8},                # int64 _id
        {"_id": 6, "imgs": [{"picture": pictures[5]}], "category_id": Int64(9)},                # int64 category
        {"_id": 7, "extra": "é", "imgs": [{"picture": pictures[6]}], "category_id": 10},         # extra key
        {"_id": 8, "imgs": [{"picture": p} for p in pictures], "category_id": 11},              # 12 images
        {"_id": 9, "imgs": [{"picture": Binary(pictures[7], 0x80)}], "category_id": 12},        # binary subtype
        {"_id": 10, "imgs": [{"picture": pictures[8], "note": 1}], "category_id": 13},          # extra image key
        {"_id": 2**31 - 1, "imgs": [{"picture": pictures[9]}], "category_id": 2**31 - 1},
    ]


def decoded_pictures(raw):
    try:
        doc = bson.decode(raw)
        return doc["_id"], doc.get("category_id", -1), [bytes(img["picture"]) for img in doc["imgs"]]
    except Exception:   # noqa: BLE001 - any failure to decode is "not a product"
        return None


def test_located_pictures_are_exactly_what_bson_decode_finds():
    """Over valid products of every layout and thousands of corrupted copies: wherever the
    vectorised locator (and its scalar twin) accepts a document, pymongo decodes it to the
    same _id, category and pictures; Kaggle layouts are accepted, others left to decoding."""
    from data.bson_layout import kaggle_picture_spans, locate_pictures
    raws = [bson.encode(d) for d in layout_variants()]
    kaggle = [True, True, True, True, False, False, False, False, False, False, True]
    rng = np.random.RandomState(0)
    variants, source = list(raws), list(range(len(raws)))
    for k, raw in enumerate(raws[:4]):
        for pos in list(range(len(raw))) if len(raw) < 2000 else rng.randint(0, len(raw), 400):
            for value in (raw[pos] ^ 0x01, raw[pos] ^ 0x80, 0, 0xFF):
                bad = bytearray(raw)
                bad[pos] = value
                variants.append(bytes(bad))
                source.append(k)
    # The index rows: those of the original document (what indexing the intact file gave).
    truth = [decoded_pictures(v) for v in variants]
    rows = [(int(truth[k][0]), len(truth[k][2]), int(truth[k][1])) for k in source]
    buffer = bytearray(b"\0" * 5 + b"".join(variants) + b"\0" * 64)
    starts = 5 + np.concatenate([[0], np.cumsum([len(v) for v in variants])[:-1]])
    ok, first, picture_starts, picture_lengths = locate_pictures(
        buffer, starts, [len(v) for v in variants], [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    assert ok[:len(raws)].tolist() == kaggle
    assert ok.sum() > len(raws)          # corrupted JPEG bytes leave a valid document
    for k, v in enumerate(variants):
        scalar = kaggle_picture_spans(v, 0, len(v))
        if not ok[k]:
            assert scalar is None or (scalar[0], len(scalar[2]), scalar[1]) != rows[k], k
            continue
        assert truth[k] is not None, f"variant {k} accepted but not BSON"
        located = [bytes(buffer[a:a + n]) for a, n in zip(picture_starts[first[k]:first[k + 1]],
                                                          picture_lengths[first[k]:first[k + 1]])]
        assert (truth[k][0], truth[k][1]) == (rows[k][0], rows[k][2]) and located == truth[k][2], k
        assert scalar is not None and [bytes(v[a:b]) for a, b in scalar[2]] == truth[k][2], k


def test_every_layout_converts_like_bson_decode(tmp_path, csv_path):
    """Kaggle-layout products (batched) and others (decoded) interleave in one read batch."""
    docs = make_products(30, seed=31)
    from bson.int64 import Int64
    docs[3]["_id"] = Int64(docs[3]["_id"])
    docs[4] = {"_id": docs[4]["_id"], "imgs": docs[4]["imgs"], "category_id": docs[4]["category_id"]}
    docs[5]["imgs"] = docs[5]["imgs"] * 4                         # 4-16 images: keys past "9"
    docs[6]["note"] = "not Kaggle"
    path = write_bson(str(tmp_path / "mixed.bson"), docs)
    rec = str(tmp_path / "mixed.rec")
    report = convert(path, rec, small_options(csv_path, shuffle=False, part_mb=1), progress=False)
    records = read_records(rec)
    assert [(r[1], r[2]) for r in records] == [(d["_id"], k) for d in docs for k in range(len(d["imgs"]))]
    assert {(pid, k): (label, image) for label, pid, k, image in records} == \
        expected_images(docs, CategoryMap.from_csv(csv_path))
    assert report["records"] == len(records)


def indexed_file(tmp_path, docs):
    """(docs, path, file bytes) of a written and indexed train.bson."""
    path = write_bson(str(tmp_path / "train.bson"), docs)
    BsonIndex.load_or_build(path)
    return docs, path, bytearray(open(path, "rb").read())


def overwrite_behind_the_index(path, raw):
    """Write `raw` over the file with the same size and time, so that its cached index stays valid."""
    stat = os.stat(path)
    with open(path, "wb") as f:
        f.write(raw)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert BsonIndex.load(path) is not None


@pytest.mark.parametrize("damage", ["picture_length", "array_terminator", "element_type"])
def test_a_document_damaged_after_indexing_stops_with_a_located_error_or_is_skipped(damage, tmp_path, csv_path):
    docs, path, raw = indexed_file(tmp_path, make_products(12, seed=14))
    k = 6
    offset = sum(len(bson.encode(d)) for d in docs[:k])
    doc = bson.encode(docs[k])
    first_picture = doc.index(b"\x05picture\x00")
    if damage == "picture_length":
        raw[offset + first_picture + 9:offset + first_picture + 13] = struct.pack("<i", 10 ** 6)
    elif damage == "array_terminator":
        imgs = doc.index(b"\x04imgs\x00")
        raw[offset + imgs + 6 + struct.unpack_from("<i", doc, imgs + 6)[0] - 1] = 7
    else:
        raw[offset + first_picture] = 0x02                           # picture: a string, not binary
    overwrite_behind_the_index(path, raw)
    with pytest.raises(DataInputError) as error:
        convert(path, str(tmp_path / "stop.rec"), small_options(csv_path, shuffle=False), progress=False)
    assert (error.value.path, error.value.offset, error.value.product_id) == (path, offset, docs[k]["_id"])
    assert isinstance(error.value, StaleIndexError) and "modified" in error.value.reason
    # With --skip-bad the file is indexed again, which finds the damaged document bad.
    report = convert(path, str(tmp_path / "skip.rec"), small_options(csv_path, shuffle=False, skip_bad=True),
                     progress=False)
    assert [(s["offset"], s["product_id"]) for s in report["index_problems"] + report["skipped"]] == \
        [(offset, docs[k]["_id"])]
    assert {(r[1], r[2]) for r in read_records(str(tmp_path / "skip.rec"))} == \
        {(d["_id"], n) for i, d in enumerate(docs) if i != k for n in range(len(d["imgs"]))}


def test_batched_reads_fill_the_buffer_in_order_and_detect_a_shorter_file(tmp_path):
    docs = make_products(10, seed=15)
    path = write_bson(str(tmp_path / "train.bson"), docs)
    index = BsonIndex.build(path)
    positions = np.array([4, 5, 6, 1, 9, 0])                     # runs 4-6, 1, 9, 0
    buffer = bytearray(1 << 20)
    starts = index.read_into(positions, buffer)
    assert [bytes(buffer[s:s + n]) for s, n in zip(starts, index.records["length"][positions])] == \
        [bson.encode(docs[p]) for p in positions]
    os.truncate(path, int(index.records["offset"][6]) + 10)
    with pytest.raises(DataInputError, match="shorter than its index") as error:
        index.read_into(positions, buffer)
    assert (error.value.offset, error.value.product_id) == (index.records["offset"][4], docs[4]["_id"])


# ---- planned places: block shuffle, record sizes known from the index --------------------------

def test_shuffled_order_permutes_blocks_of_consecutive_products():
    sizes = np.random.RandomState(1).randint(2_000, 30_000, 400)
    np.testing.assert_array_equal(shuffled_order(sizes, 5, 0), np.random.RandomState(5).permutation(400))
    order = shuffled_order(sizes, 5, 65536)
    assert sorted(order.tolist()) == list(range(400))
    # Blocks: the products whose records start in the same 64 KB stretch of the file-order output.
    starts = np.cumsum(sizes) - sizes
    block_of = np.unique(starts // 65536, return_inverse=True)[1]
    blocks_in_order = [b for i, b in enumerate(block_of[order]) if i == 0 or block_of[order][i - 1] != b]
    assert blocks_in_order == np.random.RandomState(5).permutation(block_of.max() + 1).tolist()
    for b in range(block_of.max() + 1):
        members = order[block_of[order] == b]
        assert members.tolist() == list(range(members[0], members[0] + len(members))), "file order within a block"
    assert 3 <= np.mean(np.bincount(block_of)) <= 8
    assert not np.array_equal(shuffled_order(sizes, 6, 65536), order)


def test_pictures_holding_the_magic_word_go_to_their_planned_places(tmp_path, csv_path):
    docs = with_magic_words(make_products(80, seed=21))
    path = write_bson(str(tmp_path / "magic.bson"), docs)
    index = BsonIndex.load_or_build(path)
    pictures = [img["picture"] for d in docs for img in d["imgs"]]
    assert index.picture_lengths.tolist() == [len(p) for p in pictures]
    assert index.picture_fact(RECORDIO_MAGIC_WORDS, np.arange(len(pictures))).tolist() == \
        [aligned_magic_words(p) for p in pictures]
    assert sum(aligned_magic_words(p) > 0 for p in pictures) >= 20
    reference = None
    for workers in (1, 2):
        rec = str(tmp_path / f"magic{workers}.rec")
        # (some pictures are nothing but magic words, not JPEGs: written as they are)
        report = convert(path, rec, small_options(csv_path, workers=workers, shuffle_block_kb=2, verify_jpeg=False),
                         progress=False)
        records = read_records(rec)
        assert read_sequentially(rec) == records
        assert {(pid, k): (label, image) for label, pid, k, image in records} == \
            expected_images(docs, CategoryMap.from_csv(csv_path))
        assert report["rec_bytes"] == os.path.getsize(rec)
        reference = reference or file_bytes(*record_paths(rec))
        assert file_bytes(*record_paths(rec)) == reference


def test_a_magic_word_written_into_a_picture_after_indexing_is_caught(tmp_path, csv_path):
    docs, path, raw = indexed_file(tmp_path, make_products(20, seed=22))
    k = 9
    offset = sum(len(bson.encode(d)) for d in docs[:k])
    start = offset + bson.encode(docs[k]).index(docs[k]["imgs"][0]["picture"])
    raw[start + 8:start + 12] = MAGIC_BYTES             # same size, an aligned magic word: a longer record
    overwrite_behind_the_index(path, raw)
    with pytest.raises(StaleIndexError, match="where the index plans") as error:
        convert(path, str(tmp_path / "stop.rec"), small_options(csv_path), progress=False)
    assert (error.value.offset, error.value.product_id) == (offset, docs[k]["_id"])
    # With --skip-bad the file is indexed again and converted exactly.
    rec = str(tmp_path / "skip.rec")
    report = convert(path, rec, small_options(csv_path, skip_bad=True), progress=False)
    assert report["index_problems"] == [] and report["skipped"] == []
    changed = copy.deepcopy(docs)
    picture = bytearray(changed[k]["imgs"][0]["picture"])
    picture[8:12] = MAGIC_BYTES
    changed[k]["imgs"][0]["picture"] = bytes(picture)
    assert {(pid, n): (label, image) for label, pid, n, image in read_records(rec)} == \
        expected_images(changed, CategoryMap.from_csv(csv_path))


def test_the_output_is_preallocated_where_the_file_system_can(tmp_path):
    from data.bson2rec import preallocate
    path = tmp_path / "out.rec"
    with open(path, "wb") as f:
        f.truncate(10 << 20)
        before = os.fstat(f.fileno()).st_blocks
        preallocate(f.fileno(), 10 << 20)
        after = os.fstat(f.fileno()).st_blocks
    assert os.path.getsize(path) == 10 << 20 and open(path, "rb").read(4096) == bytes(4096)
    if not sys.platform.startswith("linux") or before == after == 0:
        pytest.skip("no fallocate(2) here")
    assert after * 512 >= 10 << 20


