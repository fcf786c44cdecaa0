"""predict and ensemble at the command line: every readable product has a row, nothing is
lost silently, broken inputs end with one located error line, and prediction folders and
submissions are locked outputs whose temporary names stay hidden."""
import glob
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import bson
import numpy as np
import pytest

from data.bson_index import BsonIndex
from data.locks import output_lock
from helpers import make_products, read_docs
from predict.outputs import Predictions, PredictionWriter
from predict.sources import skipped_documents
from predict_world import train_tiny_run, write_val_rec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_PICTURES, BAD_PICTURES = 10 ** 9 + 1, 10 ** 9 + 2     # ids of the two products without a decodable picture


def run_tool(tool, *args):
    return subprocess.run([sys.executable, "-m", f"predict.{tool}", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)


def predict_args(world, input_path, out, *extra, models=None):
    return ["--input", input_path, "--models", *(models or world.runs), "--out", out, "--categories",
            world.categories, "--decoders", "1", "--batch-size", "16", "--no-progress", *extra]


def assert_one_error_line(result, prog, *fragments):
    """A non-zero exit whose stderr holds one `error:` line, `PROG: error: ...` with every
    fragment, and no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])


def read_submission(path, opener=open):
    with opener(path, "rt") as f:
        lines = f.read().splitlines()
    return lines[0], np.array([[int(v) for v in line.split(",")] for line in lines[1:]], np.int64)


@pytest.fixture(scope="module")
def submission_preds(world, tmp_path_factory):
    """Both models' predictions of the synthetic test.bson, by the command line."""
    out = tmp_path_factory.mktemp("test-preds")
    result = run_tool("predict", *predict_args(world, world.test_bson, out))
    assert result.returncode == 0, result.stderr
    return [str(out / "dpn_tiny"), str(out / "resnext_tiny")]


# ------------------------------------------------------------------------------------------
# Every product whose _id can be read gets a row; the submission never misses one silently
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_on_a_converted_side(world, tmp_path_factory):
    """The training side converted by data.bson2rec (its report holds the class histogram)
    and a copy of dpn_tiny's run whose checkpoint names that `.rec` as its --data-train."""
    folder = tmp_path_factory.mktemp("side")
    rec = folder / "A_train.rec"
    subprocess.run([sys.executable, "-m", "data.bson2rec", world.train_bson, "--out", str(rec), "--categories",
                    world.categories, "--workers", "1", "--no-progress"], check=True, cwd=ROOT, capture_output=True,
                   timeout=180)
    run = shutil.copytree(world.runs[0], folder / "runs" / "dpn_tiny")
    meta = json.loads((run / "epoch-0001.json").read_text())
    (run / "epoch-0001.json").write_text(json.dumps(dict(meta, args={"data_train": str(rec)})))
    report = folder / "A_train.report.json"
    return str(run), report, json.loads(report.read_text())["class_histogram"]


def corrupt_test_bson(world, path):
    """test.bson with four good products and three bad documents: one without pictures
    (readable `_id`), a damaged region where no `_id` can be read (a negative length
    prefix), one whose pictures are empty and random bytes. Returns the ids of the products
    whose `_id` can be read, in file order, and the offsets of the bad documents and of the
    good one after the damaged region."""
    good = [bson.encode(d) for d in read_docs(world.test_bson)[:4]]
    bad = [bson.encode({"_id": NO_PICTURES, "imgs": []}), b"\xff\xff\xff\xff" + b"\xab" * 40,
           bson.encode({"_id": BAD_PICTURES, "imgs": [{"picture": b""}, {"picture": os.urandom(50)}]})]
    parts = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]
    with open(path, "wb") as f:
        f.write(b"".join(parts))
    starts = np.cumsum([0] + [len(p) for p in parts])[:-1].tolist()
    ids = [bson.decode(p)["_id"] if p is not bad[1] else None for p in parts]
    return [i for i in ids if i is not None], [starts[1], starts[3], starts[4], starts[5]]


def test_every_readable_product_has_a_row_and_the_submission_never_misses_one_silently(
        world, categories, trained_on_a_converted_side, tmp_path):
    run, report, histogram = trained_on_a_converted_side
    path = str(tmp_path / "test.bson")
    ids, (no_pictures_at, damaged_at, damage_end, bad_pictures_at) = corrupt_test_bson(world, path)
    out = tmp_path / "preds"
    args = predict_args(world, path, out, "--skip-bad", models=[run])

    # without --skip-bad-images, the empty picture is a located error of its decoder
    assert_one_error_line(run_tool("predict", *args), "predict", "decoder 0",
                          f"{path}: offset {bad_pictures_at}, product {BAD_PICTURES}: image 0 (0 bytes) is not a "
                          "decodable JPEG")
    assert not os.path.exists(out / "dpn_tiny")

    result = run_tool("predict", *args, "--skip-bad-images")
    assert result.returncode == 0, result.stderr
    preds = Predictions(str(out / "dpn_tiny"))
    np.testing.assert_array_equal(preds.ids, ids)                      # file order, NO_PICTURES included
    fallback = preds.manifest["fallback"]
    assert fallback["products"] == 2 and fallback["product_ids"] == [NO_PICTURES, BAD_PICTURES]
    assert fallback["class_prior"] == str(report) and fallback["class"] == int(np.argmax(histogram))
    rows = [ids.index(NO_PICTURES), ids.index(BAD_PICTURES)]
    prior = np.asarray(histogram, np.float32) / sum(histogram)
    np.testing.assert_allclose(np.asarray(preds.probs("mean.none"), np.float32)[rows], [prior, prior], atol=1e-3)
    assert [(d["offset"], d["lost_product_ids"], d["row"]) for d in preds.manifest["skipped_documents"]] == \
        [(no_pictures_at, [NO_PICTURES], True), (damaged_at, [], False)]
    assert [p.split(": ")[-1] for p in preds.manifest["problems"]] == \
        ["image 0 (0 bytes) is not a decodable JPEG", "image 1 (50 bytes) is not a decodable JPEG"]
    assert f"{path}: offset {bad_pictures_at}, product {BAD_PICTURES}: image 1" in preds.manifest["problems"][1]
    assert "dpn_tiny: 2 products without a decodable picture got the fallback" in result.stderr
    assert "2 damaged regions skipped (manifest.json: skipped_documents); rows stand for the products lost in 1" \
        in result.stderr

    # the damaged region had no readable _id: the submission would miss its product
    submission = tmp_path / "submission.csv.gz"
    ensemble = ["--preds", out / "dpn_tiny", "--categories", world.categories, "--submission", submission,
                "--no-progress"]
    assert_one_error_line(run_tool("ensemble", *ensemble), "ensemble",
                          f"{submission} would miss at least 1 product of {path} (damaged bytes "
                          f"{damaged_at}..{damage_end})",
                          "--allow-missing")
    assert not submission.exists()
    result = run_tool("ensemble", *ensemble, "--allow-missing")
    assert result.returncode == 0, result.stderr
    header, written = read_submission(submission, gzip.open)
    assert header == "_id,category_id"
    np.testing.assert_array_equal(written[:, 0], ids)
    assert written[rows, 1].tolist() == [categories.category_ids[np.argmax(histogram)]] * 2


@pytest.mark.parametrize("test", [True, False], ids=["test.bson", "train BSON"])
def test_a_damaged_region_keeps_rows_for_its_readable_ids_where_no_label_is_needed(tmp_path, test):
    docs = make_products(3, test=test)
    no_pictures = dict(docs[1], _id=77, imgs=[])
    parts = [bson.encode(docs[0]), bson.encode(no_pictures), bson.encode(docs[1]), b"\xff\xff\xff\xff" + b"\xab" * 40,
             bson.encode(docs[0]), bson.encode(docs[2])]       # docs[0] again: a duplicate
    path = tmp_path / "products.bson"
    path.write_bytes(b"".join(parts))
    skipped = skipped_documents(BsonIndex.build(str(path), skip_bad=True))
    # a duplicate keeps its first document's row; the product without pictures keeps one where
    # no label is needed (test.bson); nothing stands for the damaged region without an _id
    assert [(d["lost_product_ids"], d["row"]) for d in skipped] == [([77], test), ([], False), ([docs[0]["_id"]], True)]


def test_an_empty_input_is_an_error_for_predict_and_ensemble(world, tmp_path):
    empty = tmp_path / "test.bson"
    empty.write_bytes(b"")
    assert_one_error_line(run_tool("predict", *predict_args(world, empty, tmp_path / "preds")), "predict",
                          f"{empty}: no product to predict: the input is empty")
    assert os.listdir(tmp_path / "preds") == []
    # predictions of no product (as an earlier predict wrote them) give no submission either
    PredictionWriter(str(tmp_path / "old" / "m"), 6, ["mean.none"]).close(0, {"name": "m"})
    submission = tmp_path / "submission.csv"
    assert_one_error_line(run_tool("ensemble", "--preds", tmp_path / "old" / "m", "--categories", world.categories,
                                   "--submission", submission), "ensemble",
                          f"{tmp_path / 'old' / 'm'}: predictions of no product: refusing an empty submission")
    assert not submission.exists()


# ------------------------------------------------------------------------------------------
# Locked outputs, hidden temporary folders, formats that follow the suffix
# ------------------------------------------------------------------------------------------
def test_a_second_writer_of_a_prediction_folder_or_a_submission_fails_at_once(world, submission_preds, tmp_path):
    out = tmp_path / "preds"
    with output_lock(str(out / "resnext_tiny")):             # what a running predict holds
        started = time.monotonic()
        result = run_tool("predict", *predict_args(world, world.test_bson, out))
        took = time.monotonic() - started
    assert_one_error_line(result, "predict", f"{out / 'resnext_tiny'} is being written by pid {os.getpid()}")
    assert took < 10 and os.listdir(out) == []               # before any model is loaded, nothing written
    submission = tmp_path / "submission.csv"
    ensemble = ["--preds", *submission_preds, "--categories", world.categories, "--submission", submission]
    with output_lock(str(submission)):
        result = run_tool("ensemble", *ensemble)
    assert_one_error_line(result, "ensemble", f"{submission} is being written by pid {os.getpid()}")
    assert not submission.exists()
    assert run_tool("ensemble", *ensemble).returncode == 0   # the lock went with its holder


def test_a_killed_predict_leaves_only_hidden_temporaries_which_the_next_run_removes(world, tmp_path):
    out = tmp_path / "preds"
    args = predict_args(world, world.val_bson, out, "--tta", "flip,crops", "--batch-size", "8")
    proc = subprocess.Popen([sys.executable, "-m", "predict.predict", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not glob.glob(str(out / ".dpn_tiny.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)                          # as the OOM killer does
    proc.wait()
    assert glob.glob(str(out / ".dpn_tiny.tmp-*")) and glob.glob(str(out / "*/")) == []
    result = run_tool("predict", *predict_args(world, world.val_bson, out))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["dpn_tiny", "resnext_tiny"]


def test_the_submission_format_follows_its_suffix(world, submission_preds, tmp_path):
    base = ["--preds", *submission_preds, "--categories", world.categories, "--no-progress", "--submission"]
    for name in ("submission.csv", "submission.csv.gz"):
        result = run_tool("ensemble", *base, tmp_path / name)
        assert result.returncode == 0, result.stderr
    plain = (tmp_path / "submission.csv").read_bytes()
    packed = (tmp_path / "submission.csv.gz").read_bytes()
    assert plain.startswith(b"_id,category_id\n") and gzip.decompress(packed) == plain
    assert packed[3] & 0x08 and packed[10:packed.index(b"\0", 10)] == b"submission.csv"   # FNAME: the final name
    assert sorted(os.listdir(tmp_path)) == ["submission.csv", "submission.csv.gz"]     # no temporary or lock left
    assert_one_error_line(run_tool("ensemble", *base, tmp_path / "submission.txt"), "ensemble",
                          f"{tmp_path / 'submission.txt'}: a submission is a .csv or a .csv.gz file")


# ------------------------------------------------------------------------------------------
# Broken inputs and checkpoints: one located error line
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", ["inside a record", "between records"])
def test_a_truncated_rec_is_one_error_line_naming_it(world, categories, tmp_path, cut):
    rec = write_val_rec(world.val_bson, categories, str(tmp_path / "A_val.rec"))
    with open(rec[:-4] + ".idx") as f:
        offsets = [int(line.split("\t")[1]) for line in f]
    size = offsets[10] + (100 if cut == "inside a record" else 0)
    with open(rec, "r+b") as f:
        f.truncate(size)
    expected = "record 10: truncated or corrupt RecordIO record" if cut == "inside a record" else \
        f"10 records, but {rec[:-4]}.idx lists {len(offsets)}"
    assert_one_error_line(run_tool("predict", *predict_args(world, rec, tmp_path / "preds")), "predict",
                          "reader 0", f"{rec}: {expected}")
    assert os.listdir(tmp_path / "preds") == []


def test_a_truncated_checkpoint_and_models_of_different_classes_are_one_error_line(world, tmp_path):
    run = shutil.copytree(world.runs[1], tmp_path / "runs" / "resnext_tiny")
    params = run / "epoch-0001.params"
    params.write_bytes(params.read_bytes()[:params.stat().st_size // 2])
    assert_one_error_line(run_tool("predict", *predict_args(world, world.test_bson, tmp_path / "a", models=[run])),
                          "predict", "model worker 0", f"{params} cannot be loaded", "truncated")
    rng = np.random.RandomState(0)
    seven = train_tiny_run(str(tmp_path / "runs" / "seven"), "resnext_tiny", rng.rand(4, 3, 180, 180) * 255,
                           np.arange(4, dtype=np.float32), classes=7, steps=1, batch_size=4)
    result = run_tool("predict", *predict_args(world, world.test_bson, tmp_path / "b", models=[world.runs[0], seven]))
    assert_one_error_line(result, "predict", f"{seven}/epoch-0001.params predicts 7 classes but "
                                             f"{world.runs[0]}/epoch-0001.params predicts 6")


def test_debug_adds_the_failing_process_traceback(world, tmp_path):
    path = str(tmp_path / "test.bson")
    with open(path, "wb") as f:
        f.write(bson.encode({"_id": 5, "imgs": [{"picture": b"not a picture"}]}))
    result = run_tool("predict", *predict_args(world, path, tmp_path / "preds"), "--debug")
    assert result.returncode == 2
    assert "ChildTraceback" in result.stderr and re.search(r"in decode_product\n", result.stderr)
    assert result.stderr.rstrip().splitlines()[-1].startswith("predict: error: decoder 0")
