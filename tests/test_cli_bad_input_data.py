"""What the data tools accept, at the command line: negative ids, pictures that will not decode,
category files in other encodings or with a duplicate id, a test file given categories, a
cached index of another kind, damaged regions. Errors end with one line `PROG: error: ...`
naming the file (and offset, product, image), never a traceback; `--skip-bad` runs report
what they left out."""
import json
import os
import pathlib
import struct
import subprocess
import sys

import bson
import numpy as np
import pytest

from data.recordio import record_paths
from data.categories import CategoryMap
from helpers import CATEGORIES, make_products, read_records, write_bson, write_categories

NEGATIVE_ID = -5
ROOT = pathlib.Path(__file__).resolve().parent.parent


def offset_of(docs, k):
    return sum(len(bson.encode(d)) for d in docs[:k])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs by name, with the documents and offsets the messages must name."""
    root = tmp_path_factory.mktemp("data-input")
    negative = make_products(10, seed=11)
    negative[3]["_id"] = NEGATIVE_ID
    pictures = make_products(12, seed=12)
    pictures[2]["imgs"] = [{"picture": b""}]                                              # its only picture: empty
    pictures[5]["imgs"][0]["picture"] = pictures[5]["imgs"][0]["picture"][:-500]          # truncated
    pictures[8]["imgs"].append({"picture": np.random.RandomState(0).bytes(3000)})        # random bytes
    header = "category_id,category_level1,category_level2,category_level3\n"
    (root / "latin1.csv").write_bytes((header + "1000000000,MAISON,CUISINE,POELE\n"
                                       "1000000017,AUTO,PNEUS,PNEU ÉTÉ\n").encode("latin-1"))
    (root / "duplicate.csv").write_text(header + "".join(f"{c},A,B,C{c}\n" for c in CATEGORIES + [CATEGORIES[1]]))
    return {
        "root": root, "out": str(root / "out"), "negative_docs": negative, "picture_docs": pictures,
        "negative_bson": write_bson(str(root / "negative.bson"), negative),
        "negative_offset": offset_of(negative, 3),
        "pictures_bson": write_bson(str(root / "pictures.bson"), pictures),
        "empty_offset": offset_of(pictures, 2), "empty_product": pictures[2]["_id"],
        "categories": write_categories(root / "category_names.csv"),
        "latin1_csv": str(root / "latin1.csv"), "duplicate_csv": str(root / "duplicate.csv"),
        "train_bson": write_bson(str(root / "train.bson"), make_products(12, seed=13)),
    }


def run(*argv, timeout=120):
    return subprocess.run([sys.executable, *argv, "--no-progress"], capture_output=True, text=True, timeout=timeout)


CASES = {
    # id: (command line after the Python interpreter, the error line contains)
    "bson_index negative id": (["-m", "data.bson_index", "{negative_bson}"],
                               "{negative_bson}: offset {negative_offset}, product -5: negative _id"),
    "split negative id": (["-m", "data.split_train_bson", "{negative_bson}", "--out", "{out}/A.split.npz"],
                          "{negative_bson}: offset {negative_offset}, product -5: negative _id"),
    "md5_dict negative id": (["-m", "data.md5_dict", "{negative_bson}", "--out", "{out}/a.md5.npz"],
                             "{negative_bson}: offset {negative_offset}, product -5: negative _id"),
    "bson2rec negative id": (["-m", "data.bson2rec", "{negative_bson}", "--categories", "{categories}",
                              "--out", "{out}/neg.rec"],
                             "{negative_bson}: offset {negative_offset}, product -5: negative _id"),
    "bson2rec undecodable picture": (["-m", "data.bson2rec", "{pictures_bson}", "--categories", "{categories}",
                                      "--out", "{out}/pictures.rec"],
                                     "{pictures_bson}: offset {empty_offset}, product {empty_product}: imgs[0] is "
                                     "not a decodable JPEG (0 bytes): empty picture"),
    "bson2rec latin-1 categories": (["-m", "data.bson2rec", "{train_bson}", "--categories", "{latin1_csv}",
                                     "--out", "{out}/l.rec"], "{latin1_csv}: line 3: byte 0xc9 is not UTF-8"),
    "bson2rec duplicate category": (["-m", "data.bson2rec", "{train_bson}", "--categories", "{duplicate_csv}",
                                     "--out", "{out}/d.rec"],
                                    "{duplicate_csv}: category_id 1000000017 appears twice, on lines 3 and 7"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_ends_with_one_error_line_naming_the_file(case, world):
    argv, expected = CASES[case]
    result = run(*(a.format(**world) for a in argv))
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and expected.format(**world) in errors[0], result.stderr


def convert(world, bson_path, name, *options):
    rec = f"{world['out']}/{name}.rec"
    result = run("-m", "data.bson2rec", bson_path, "--out", rec, "--workers", "2", *options)
    assert result.returncode == 0, result.stderr
    with open(record_paths(rec)[2], encoding="utf-8") as f:
        return rec, json.load(f), result


def test_skip_bad_leaves_out_and_reports_every_picture_that_will_not_decode(world):
    docs = world["picture_docs"]
    rec, report, _ = convert(world, world["pictures_bson"], "skipped", "--categories", world["categories"],
                             "--skip-bad")
    bad = {(2, 0): "empty picture", (5, 0): "truncated (no end-of-image marker)",
           (8, len(docs[8]["imgs"]) - 1): "no JPEG start-of-image marker"}
    assert [(s["offset"], s["product_id"], s["image"]) for s in report["skipped"]] == \
        [(offset_of(docs, k), docs[k]["_id"], number) for k, number in bad]
    for skipped, ((k, number), reason) in zip(report["skipped"], bad.items()):
        length = len(docs[k]["imgs"][number]["picture"])
        assert skipped["reason"] == f"imgs[{number}] is not a decodable JPEG ({length} bytes): {reason}"
    assert report["images"]["skipped_bad"] == 3 and report["products"]["skipped_bad"] == 1
    written = {(pid, number) for _, pid, number, _ in read_records(rec)}
    assert written == {(d["_id"], n) for k, d in enumerate(docs) for n in range(len(d["imgs"])) if (k, n) not in bad}


def test_no_verify_jpeg_writes_every_picture_as_it_is(world):
    docs = world["picture_docs"]
    rec, report, _ = convert(world, world["pictures_bson"], "unchecked", "--categories", world["categories"],
                             "--no-verify-jpeg")
    assert report["skipped"] == [] and report["inputs"]["verify_jpeg"] is False
    assert {(pid, number): image for _, pid, number, image in read_records(rec)} == \
        {(d["_id"], n): img["picture"] for d in docs for n, img in enumerate(d["imgs"])}


def test_skip_bad_leaves_out_a_negative_id_and_reports_it(world):
    docs = world["negative_docs"]
    rec, report, _ = convert(world, world["negative_bson"], "negative", "--categories", world["categories"],
                             "--skip-bad")
    [problem] = report["index_problems"]
    assert (problem["offset"], problem["product_id"], problem["lost_product_ids"]) == \
        (world["negative_offset"], NEGATIVE_ID, [NEGATIVE_ID])
    assert {pid for _, pid, _, _ in read_records(rec)} == {d["_id"] for d in docs if d["_id"] != NEGATIVE_ID}


def test_the_predictor_reads_a_test_file_through_the_same_check(world, tmp_path):
    from data.errors import BsonFormatError
    from predict.sources import BsonSource
    docs = make_products(4, test=True, seed=14)
    docs[1]["_id"] = NEGATIVE_ID
    path = write_bson(str(tmp_path / "test.bson"), docs)
    with pytest.raises(BsonFormatError, match="negative _id") as error:
        BsonSource(path, progress=False)
    assert (error.value.offset, error.value.product_id) == (offset_of(docs, 1), NEGATIVE_ID)
    index = BsonSource(path, skip_bad=True, progress=False).index
    assert index.product_ids.tolist() == [docs[k]["_id"] for k in (0, 2, 3)]
    assert [(p["offset"], p["product_id"]) for p in index.problems] == [(offset_of(docs, 1), NEGATIVE_ID)]


def test_a_test_file_given_categories_converts_with_labels_minus_one(world, tmp_path):
    docs = make_products(6, test=True, seed=15)
    path = write_bson(str(tmp_path / "test.bson"), docs)
    rec, report, result = convert(world, path, "test", "--categories", world["categories"])
    assert "has no category_id (a test file): every label is -1" in result.stderr
    assert report["kind"] == "test" and report["skipped"] == [] and report["index_problems"] == []
    records = read_records(rec)
    assert len(records) == sum(len(d["imgs"]) for d in docs) and {label for label, *_ in records} == {-1.0}


def test_a_cached_test_kind_index_does_not_make_a_train_conversion_unlabelled(world, tmp_path):
    path = write_bson(str(tmp_path / "train.bson"), make_products(8, seed=16))
    assert run("-m", "data.bson_index", "--kind", "test", path).returncode == 0
    no_categories = run("-m", "data.bson2rec", path, "--out", str(tmp_path / "x.rec"))
    assert no_categories.returncode != 0 and f"{path} has category ids: pass --categories" in no_categories.stderr
    rec, report, _ = convert(world, path, "labelled", "--categories", world["categories"])
    category_map = CategoryMap.from_csv(world["categories"])
    with open(path, "rb") as f:
        label_of = {d["_id"]: float(category_map.class_of(d["category_id"])) for d in bson.decode_file_iter(f)}
    assert report["kind"] == "train"
    assert [label for label, *_ in read_records(rec)] == [label_of[pid] for _, pid, _, _ in read_records(rec)]


def test_bson_index_reports_a_damaged_region_with_its_bytes_and_lost_products(tmp_path):
    docs = make_products(20, seed=17)
    offsets = np.cumsum([0] + [len(bson.encode(d)) for d in docs]).tolist()
    raw = bytearray(b"".join(bson.encode(d) for d in docs))
    for k in (7, 8):
        raw[offsets[k]:offsets[k] + 4] = struct.pack("<i", -1)
    path = tmp_path / "damaged.bson"
    path.write_bytes(bytes(raw))
    result = run("-m", "data.bson_index", "--skip-bad", str(path))
    assert result.returncode == 0, result.stderr
    assert f"skipped: {path}: offset {offsets[7]}, product {docs[7]['_id']}: invalid length prefix: negative " \
           f"document length -1; skipped bytes {offsets[7]}..{offsets[9]} ({offsets[9] - offsets[7]:,} bytes; " \
           f"lost product ids {docs[7]['_id']}, {docs[8]['_id']})" in result.stdout


def test_the_dataset_script_checks_every_picture_by_default(world, tmp_path):
    """shell/bson2rec_trainval.sh passes no picture option: bson2rec's default check stops it at
    a picture that will not decode, naming it."""
    data = tmp_path / "data"
    data.mkdir()
    docs = world["picture_docs"]
    (data / "train.bson").write_bytes(open(world["pictures_bson"], "rb").read())
    write_bson(str(data / "test.bson"), make_products(3, test=True, seed=18, first_id=10_000))
    write_categories(data / "category_names.csv")
    script = str(ROOT / "shell" / "bson2rec_trainval.sh")
    result = subprocess.run(["sh", script, "--data-dir", str(data), "--rec-dir", str(tmp_path / "rec"), "--workers",
                             "2"], env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0 and "step failed" in result.stderr
    assert f"{data / 'train.bson'}: offset {offset_of(docs, 2)}, product {docs[2]['_id']}: imgs[0] is not a " \
           "decodable JPEG (0 bytes): empty picture" in result.stderr
