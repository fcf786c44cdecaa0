"""Ensembles, MD5 tricks, submission and the validation table, end to end on synthetic data
with tiny trained models (real checkpoints, the ZeroMQ pipeline, the command-line scripts)."""
import collections
import copy
import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from data.bson_index import BsonIndex
from data.categories import CategoryMap
from data.md5_dict import Md5Dictionary, build_dictionary
from helpers import read_docs, write_bson
from predict.combine import COMBINERS, combine_models
from predict.decode import Views
from predict.ensembling import (ensemble_classes, evaluate, load_predictions, product_hash_classes,
                                write_submission)
from predict.checkpoints import CheckpointModel
from predict.pipeline import PipelineConfig
from predict.run import predict_input

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def predict(world, input_path, out, md5_dict, combiners=("mean",), md5_modes=("none",)):
    config = PipelineConfig(decoders=2, batch_size=16, views=Views(flip=True), progress=False, stall_timeout=60)
    predict_input(input_path, [CheckpointModel(r) for r in world.runs], out, config,
                  CategoryMap.from_csv(world.categories), combiners, md5_modes, md5_dict)
    return [os.path.join(out, name) for name in ("dpn_tiny", "resnext_tiny")]


def run_script(args, module=False):
    cmd = [sys.executable, "-m", "predict.ensemble"] if module else \
        [sys.executable, os.path.join(ROOT, "predict", "ensemble.py")]
    return subprocess.run(cmd + args, check=True, cwd=ROOT, capture_output=True, text=True, timeout=120)


def read_submission(path):
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    return lines[0], np.array([[int(v) for v in line.split(",")] for line in lines[1:]], np.int64)


# ------------------------------------------------------------------------------------------
# A training side with repeated images and products, and test products made from it
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def md5_case(world, tmp_path_factory):
    """A train BSON whose product X reappears with another category (conflicting MD5s and
    product hash), its dictionary, and a test BSON with copies of train products."""
    folder = tmp_path_factory.mktemp("md5")
    train = read_docs(world.train_bson)
    x, y = train[0], next(d for d in train[1:] if d["category_id"] != train[0]["category_id"])
    conflict = copy.deepcopy(x)
    conflict.update(_id=10 ** 6, category_id=y["category_id"])
    train_path = write_bson(str(folder / "train.bson"), train + [conflict])
    dict_path = build_dictionary(train_path, workers=1, progress=False).save(str(folder / "train.md5.npz"))
    new_image = read_docs(world.test_bson)[0]["imgs"][0]
    crafted = [{"_id": 10 ** 7 + 1, "imgs": copy.deepcopy(y["imgs"])},                  # product hash of y
               {"_id": 10 ** 7 + 2, "imgs": copy.deepcopy(x["imgs"])},                  # conflicting hash
               {"_id": 10 ** 7 + 3, "imgs": copy.deepcopy(y["imgs"][:1]) + [new_image]}]
    test_path = write_bson(str(folder / "test.bson"), read_docs(world.test_bson) + crafted)
    preds = predict(world, test_path, str(folder / "preds"), dict_path, md5_modes=("none", "unique"))
    return dict(train_docs=train + [conflict], test_docs=read_docs(test_path), test_path=test_path,
                dict_path=dict_path, preds=preds, folder=folder)


def independent_md5_tables(train_docs):
    """Image hex MD5 -> categories and sorted-joined product key -> categories (hashlib)."""
    images, products = collections.defaultdict(set), collections.defaultdict(set)
    for doc in train_docs:
        hexes = [hashlib.md5(img["picture"]).hexdigest() for img in doc["imgs"]]
        for h in hexes:
            images[h].add(doc["category_id"])
        products[",".join(sorted(set(hexes)))].add(doc["category_id"])
    return images, products


def test_md5_unique_mode_changes_exactly_the_products_with_a_single_category_image(md5_case, categories):
    images, _ = independent_md5_tables(md5_case["train_docs"])
    single = [[next(iter(images[h])) if len(images.get(h, ())) == 1 else None
               for h in (hashlib.md5(i["picture"]).hexdigest() for i in doc["imgs"])] for doc in md5_case["test_docs"]]
    expected = np.array([any(c is not None for c in s) for s in single])
    assert expected[-3:].tolist() == [True, False, True] and expected.sum() >= 4
    for folder in md5_case["preds"]:
        preds = load_predictions([folder])[0]
        none = np.asarray(preds.probs("mean.none"), np.float32)
        unique = np.asarray(preds.probs("mean.unique"), np.float32)
        changed = np.abs(unique - none).max(axis=1) > 1e-3
        np.testing.assert_array_equal(unique[~expected], none[~expected])
        assert changed[-3:].tolist() == [True, False, True]
        for row in np.flatnonzero(expected & ~changed):
            # unchanged only when the model already gave the dictionary's class probability 1
            classes = {categories.class_of(c) for c in single[row] if c is not None}
            assert none[row].max() > 0.999 and none[row].argmax() in classes
        for row, hits in enumerate(single):
            if all(c is not None for c in hits) and len(set(hits)) == 1:
                # every image known with the same single category: the product is one-hot on it
                assert unique[row].argmax() == categories.class_of(hits[0]) and unique[row].max() == 1


def test_product_hash_changes_exactly_the_products_of_single_category_training_products(world, md5_case,
                                                                                         categories, tmp_path):
    _, products = independent_md5_tables(md5_case["train_docs"])
    expected = {}
    for doc in md5_case["test_docs"]:
        key = ",".join(sorted({hashlib.md5(i["picture"]).hexdigest() for i in doc["imgs"]}))
        if len(products.get(key, ())) == 1:
            expected[doc["_id"]] = next(iter(products[key]))
    assert 10 ** 7 + 1 in expected and 10 ** 7 + 2 not in expected and 10 ** 7 + 3 not in expected

    args = ["--preds", *md5_case["preds"], "--categories", world.categories, "--no-progress"]
    run_script(args + ["--submission", str(tmp_path / "plain.csv.gz")])
    run_script(args + ["--submission", str(tmp_path / "hash.csv.gz"), "--product-hash-dict", md5_case["dict_path"]])
    _, plain = read_submission(str(tmp_path / "plain.csv.gz"))
    _, hashed = read_submission(str(tmp_path / "hash.csv.gz"))
    np.testing.assert_array_equal(plain[:, 0], hashed[:, 0])
    for (pid, before), (_, after) in zip(plain, hashed):
        if pid in expected:
            assert after == expected[pid]
        else:
            assert after == before
    # the same through the API: the dictionary's single categories as classes
    preds = load_predictions(md5_case["preds"])
    hash_classes = product_hash_classes(preds[0].product_hash, Md5Dictionary.load(md5_case["dict_path"]), categories)
    assert {int(p) for p in np.asarray(preds[0].ids)[hash_classes >= 0]} == set(expected)


def test_submission_has_every_test_product_once_with_a_real_category(world, categories, tmp_path):
    preds = predict(world, world.test_bson, str(tmp_path / "preds"), None)
    index = BsonIndex.load_or_build(world.test_bson)
    out = str(tmp_path / "submission.csv.gz")
    run_script(["--preds", *preds, "--categories", world.categories, "--submission", out, "--method", "geometric",
                "--weights", "2", "1", "--product-hash-dict", world.md5_dict, "--no-progress"])
    header, rows = read_submission(out)
    assert header == "_id,category_id"
    np.testing.assert_array_equal(rows[:, 0], index.product_ids)                 # each test product once, in order
    assert set(rows[:, 1]) <= set(categories.category_ids.tolist())
    # module form, arithmetic mean, no post-processing: the ensemble's argmax of the stored arrays
    run_script(["--preds", *preds, "--categories", world.categories, "--submission", out, "--no-progress"],
               module=True)
    _, rows = read_submission(out)
    loaded = load_predictions(preds)
    mean = combine_models([np.asarray(p.probs("mean.none"), np.float32) for p in loaded])
    np.testing.assert_array_equal(rows[:, 1], categories.category_ids[mean.argmax(axis=1)])


def test_validation_table_shows_models_combiners_md5_modes_ensembles_and_logs(world, categories, tmp_path):
    preds = predict(world, world.val_bson, str(tmp_path / "preds"), world.md5_dict, combiners=COMBINERS,
                    md5_modes=("none", "unique"))
    log = tmp_path / "M99_stderr.log"
    log.write_text("INFO:root:Epoch[0] Validation-accuracy=0.412345\n")
    prefix = str(tmp_path / "report" / "accuracy")
    result = run_script(["--preds", *preds, "--categories", world.categories, "--product-hash-dict", world.md5_dict,
                         "--table-out", prefix + ".md", "--logs", str(log), "--no-progress"])
    text = open(prefix + ".md", encoding="utf-8").read()
    assert open(prefix + ".png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "| M14 | DPN-107 | ImageNet-1k | A | 20 | 0.743781 |" in text and "| M99 | 1 | 0.412345 |" in text
    for combiner in COMBINERS:
        assert f"| {combiner} |" in text
    assert "| 2 models, mean | mean.unique |" in text and "| 2 models, geometric | mean.none |" in text
    assert "Reference: single models" in result.stdout

    loaded = load_predictions(preds)
    labels = np.asarray(loaded[0].labels)
    np.testing.assert_array_equal(labels, categories.classes_of(BsonIndex.load_or_build(world.val_bson).category_ids))
    evaluation = evaluate(loaded)
    for p, m in zip(loaded, evaluation["models"]):
        acc = float(np.mean(np.asarray(p.probs("geometric.unique"), np.float32).argmax(axis=1) == labels))
        assert m["variants"]["geometric.unique"]["accuracy"] == pytest.approx(acc)
    geo = combine_models([np.asarray(p.probs("mean.none"), np.float32) for p in loaded], method="geometric")
    ens = {(e["method"], e["variant"]): e for e in evaluation["ensembles"]}
    assert ens[("geometric", "mean.none")]["accuracy"] == pytest.approx(np.mean(geo.argmax(axis=1) == labels))
    assert ensemble_classes(loaded, "mean.none", "geometric", chunk_rows=7).tolist() == geo.argmax(axis=1).tolist()


def test_folders_of_different_inputs_are_not_ensembled(world, tmp_path):
    val = predict(world, world.val_bson, str(tmp_path / "val"), None)
    test = predict(world, world.test_bson, str(tmp_path / "test"), None)
    with pytest.raises(ValueError, match="same products"):
        load_predictions([val[0], test[1]])


def test_submission_rejects_duplicate_ids(categories, tmp_path):
    with pytest.raises(ValueError, match="more than once"):
        write_submission(str(tmp_path / "s.csv.gz"), [1, 2, 1], [0, 1, 2], categories)
    assert not os.path.exists(tmp_path / "s.csv.gz")
