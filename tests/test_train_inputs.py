"""What training does with bad inputs: a truncated or foreign `.idx`, labels outside
`--num-classes`, pictures that will not decode, damaged checkpoints, changed options on
resume, a second run into the same run folder, and leftovers of a run killed while saving.

The record files are real (written by data.recordio's writer, MXNet's or data.bson2rec), the
checkpoints real Gluon ones, the runs real processes of `train/train.py`."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data import record_file
from data.errors import DataInputError
from data.recordio import RecordFileError, read_idx, record_paths
from helpers import (make_products, synthetic_pictures, synthetic_products, write_bson, write_pictures_rec,
                     write_synthetic_dataset)
from recfixtures import write_checkpoints
from models import runs
from train import fit, logs
from train.mxnet_backend import checkpoint
from train.args import parse_args
from train.config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1")
CATEGORIES = [1000000000 + 17 * c for c in range(5)]      # make_products' default categories


def converted(folder, products=40):
    """`A_train.rec` + `.idx` + `.report.json` of `products` products, by data.bson2rec."""
    bson = write_bson(os.path.join(folder, "train.bson"), make_products(products, seed=5))
    csv = os.path.join(folder, "category_names.csv")
    with open(csv, "w") as f:
        f.write("category_id,category_level1,category_level2,category_level3\n")
        f.writelines("%d,a,b,c%d\n" % (c, c) for c in CATEGORIES)
    rec = os.path.join(folder, "A_train.rec")
    subprocess.run([sys.executable, "-m", "data.bson2rec", bson, "--out", rec, "--categories", csv, "--workers", "1",
                    "--no-progress"], cwd=ROOT, check=True, capture_output=True)
    return rec


def cut_index(rec, lines):
    """Keep the first `lines` lines of the `.idx` of `rec` (a truncated index)."""
    idx = record_paths(rec)[1]
    with open(idx) as f:
        kept = f.readlines()[:lines]
    with open(idx, "w") as f:
        f.writelines(kept)


def copy_rec(rec, folder, name="A_train"):
    """A copy of `rec`, its `.idx` and its report (if any) in `folder` under `name`."""
    os.makedirs(folder, exist_ok=True)
    for source, suffix in ((rec, ".rec"), (record_paths(rec)[1], ".idx"),
                           (record_paths(rec)[2], ".report.json")):
        if os.path.exists(source):
            shutil.copy(source, os.path.join(folder, name + suffix))
    return os.path.join(folder, name + ".rec")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("rec")), num_classes=5, train_products=60,
                                   val_products=20, seed=8)


@pytest.fixture(scope="module")
def converted_rec(tmp_path_factory):
    return converted(str(tmp_path_factory.mktemp("converted")))


# --- reading a .rec without MXNet ----------------------------------------------------------

def test_an_index_that_skips_records_is_found_by_the_full_pass(dataset, tmp_path):
    rec = copy_rec(dataset["train"], str(tmp_path))
    offsets = read_idx(record_paths(rec)[1])
    with open(record_paths(rec)[1], "w") as f:                 # record 5 left out
        f.writelines("%d\t%d\n" % (key, offset) for key, offset in enumerate(np.delete(offsets, 5)))
    with pytest.raises(RecordFileError, match=r"offset %d: record 4 ends at offset %d but the index puts record 5 "
                                              r"at %d" % (offsets[4], offsets[5], offsets[6])):
        record_file.read_record_headers(record_file.open_record_file(rec))


# --- 1.3: the .idx covers the whole .rec --------------------------------------------------------

def test_a_truncated_index_is_refused_naming_both_files(dataset, tmp_path):
    """Before: training took the 300 records the .idx listed and silently left the rest out."""
    rec = copy_rec(dataset["train"], str(tmp_path))
    total = record_file.open_record_file(rec).num_records
    cut_index(rec, total // 2)
    with pytest.raises(record_file.DataFileError, match=r"training index .*A_train.idx does not cover .*A_train.rec: "
                                                      r"the index lists %d records, which end at offset \d+, but "
                                                      r"the file holds %d bytes" % (total // 2, os.path.getsize(rec))):
        record_file.open_record_file(rec, "training")


def test_a_truncated_rec_is_refused(dataset, tmp_path):
    rec = copy_rec(dataset["train"], str(tmp_path))
    offsets = read_idx(record_paths(rec)[1])
    with open(rec, "r+b") as f:
        f.truncate(int(offsets[-1]) + 40)            # inside the last record
    with pytest.raises(RecordFileError, match=r"A_train.rec: offset %d: record %d of .*A_train.idx: the record "
                                              r"runs past the end of the file \(.*\): the .rec is truncated"
                                              % (offsets[-1], len(offsets) - 1)):
        record_file.open_record_file(rec)


def test_the_index_must_agree_with_the_conversion_report(converted_rec, tmp_path):
    rec = copy_rec(converted_rec, str(tmp_path))
    record = record_file.open_record_file(rec)
    assert record.report["records"] == record.num_records
    cut_index(rec, record.num_records - 3)
    with pytest.raises(record_file.DataFileError, match=r"A_train.idx lists %d records in %d bytes of .*A_train.rec, "
                                                      r"but .*A_train.report.json says the conversion wrote %d "
                                                      % (record.num_records - 3, os.path.getsize(rec),
                                                         record.num_records)):
        record_file.open_record_file(rec)


# --- 5: every label fits --num-classes ------------------------------------------------------------

def test_every_label_is_checked_not_a_sample(tmp_path):
    """One label out of range among 20,000 records (the old check read 2,000 of them)."""
    n = 20000
    labels = np.arange(n) % 5
    labels[13331] = 7
    pids, numbers = np.arange(n) + 100, np.zeros(n, np.int64)
    picture = synthetic_pictures([0], 0, 5, size=8)[0]
    rec = write_pictures_rec(str(tmp_path / "big"), labels, pids, numbers, [picture] * n)
    record = record_file.open_record_file(rec)
    record_file.check_labels(record, 8)
    with pytest.raises(DataInputError, match=r"big.rec: offset %d, product 13431: record 13331 \(image 0\) has label "
                                             r"7, not a class id of the network's --num-classes 5 outputs \(0..4\); "
                                             r"1 of the 20000 records" % record.offsets[13331]):
        record_file.check_labels(record, 5)


def test_labels_from_the_conversion_report_name_the_first_offending_record(converted_rec):
    record = record_file.open_record_file(converted_rec)
    headers = record_file.read_record_headers(record)
    assert sum(record.report["class_histogram"]) == record.num_records
    record_file.check_labels(record, 5)
    first = int(np.flatnonzero(headers.labels >= 3)[0])
    with pytest.raises(DataInputError, match=r"offset %d, product %d: record %d " % (
            record.offsets[first], headers.product_ids[first], first)):
        record_file.check_labels(record, 3)


# --- 2.3: a picture that will not decode ------------------------------------------------------------

def test_undecodable_pictures_are_found_with_their_records(tmp_path):
    labels, pids, numbers = synthetic_products(20, 4, 3)
    pictures = synthetic_pictures(labels, 3, 4)
    pictures[4], pictures[9] = b"", pictures[9][:len(pictures[9]) // 2]
    rec = write_pictures_rec(str(tmp_path / "x"), labels, pids, numbers, pictures)
    found = record_file.undecodable_pictures(record_file.open_record_file(rec))
    assert [i for i, _ in found] == [4, 9]
    assert "(0 bytes)" in found[0][1] and "truncated" in found[1][1]


# --- 10: resume ---------------------------------------------------------------------------------------

def run_args(run_dir, *extra):
    return parse_args(["--network", "dpn_tiny", "--data-train", "x.rec", "--num-classes", "3", "--lr", "0.003",
                       "--batch-size", "32", "--model-dir", run_dir, *extra])


def run_config(run_dir, *extra):
    return TrainConfig.from_args(run_args(run_dir, *extra))


def saved_run(run_dir, epochs):
    return write_checkpoints(run_dir, epochs, "dpn_tiny", 3, json.loads(json.dumps(vars(run_args(run_dir)))))


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def logged(path):
    with open(path) as f:
        return f.read()


@pytest.mark.parametrize("suffix", [".params", ".states"])
def test_resume_skips_a_truncated_latest_epoch_naming_it(tmp_path, suffix):
    run_dir = saved_run(str(tmp_path / "run"), 3)
    truncate(runs.epoch_prefix(run_dir, 3) + suffix)
    logger = logs.setup_logging(str(tmp_path / "train.log"), console=False)
    start = fit.start_point(run_config(run_dir, "--resume"), logger, checkpoint.check_loadable)
    assert start.epoch == 2 and start.params == runs.epoch_prefix(run_dir, 2) + ".params"
    assert "epoch-0003%s cannot be loaded" % suffix in logged(tmp_path / "train.log")
    assert "resuming from the epoch before" in logged(tmp_path / "train.log")
    with pytest.raises(runs.DamagedCheckpointError, match=r"epoch-0003\%s cannot be loaded \(.*\): the "
                                                                r"checkpoint is truncated or damaged" % suffix):
        fit.start_point(run_config(run_dir, "--load-epoch", "3"), logger, checkpoint.check_loadable)


def test_resume_warns_listing_the_options_that_changed(tmp_path):
    run_dir = saved_run(str(tmp_path / "run"), 1)
    logger = logs.setup_logging(str(tmp_path / "train.log"), console=False)
    fit.start_point(run_config(run_dir, "--resume", "--num-epochs", "30", "--no-progress"), logger,
                    checkpoint.check_loadable)
    assert "changed" not in logged(tmp_path / "train.log")        # bookkeeping options only
    fit.start_point(run_config(run_dir, "--resume", "--lr", "0.01", "--batch-size", "16"), logger,
                    checkpoint.check_loadable)
    assert "WARNING resuming after epoch 1 of %s with options changed since: batch_size 32 -> 16, " \
           "lr 0.003 -> 0.01\n" % run_dir in logged(tmp_path / "train.log")


# --- whole runs: 1.1 the run folder's lock, 9 leftovers of a kill, 10 resume past a damaged epoch -----

def train_command(data, run_dir, *extra):
    return [sys.executable, os.path.join(ROOT, "train", "train.py"), "--network", "dpn_tiny",
            "--data-train", data["train"], "--num-classes", "5", "--image-shape", "3,32,32", "--batch-size", "16",
            "--model-dir", run_dir, "--no-progress", *extra]


KILLED_WHILE_SAVING = """
import os, signal, sys
from data.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(bytes(1 << 20))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_one_run_per_folder_and_the_next_one_cleans_up(dataset, tmp_path):
    run_dir = str(tmp_path / "run")
    first = subprocess.Popen(train_command(dataset, run_dir, "--num-epochs", "1000"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / ".run.lock"
        deadline = time.time() + 120
        while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run(train_command(dataset, run_dir, "--num-epochs", "1"), env=ENV, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1].startswith(
            "train: error: %s is being written by pid %d (host " % (run_dir, first.pid)), second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # A run killed while saving a checkpoint left its temporary file; the next run takes the
    # dead run's lock over and removes it.
    states = runs.epoch_prefix(run_dir, 7) + ".states"
    assert subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, states], cwd=ROOT).returncode == -signal.SIGKILL
    leftovers = [name for name in os.listdir(run_dir) if name.endswith(".tmp")]
    assert any(name.startswith(".epoch-0007.states.") for name in leftovers), leftovers
    third = subprocess.run(train_command(dataset, run_dir, "--num-epochs", "1", "--resume"), env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert not [name for name in os.listdir(run_dir) if name.endswith(".tmp")]
    assert not lock.exists()


@pytest.mark.slow
def test_resume_past_a_truncated_checkpoint_at_the_command_line(dataset, tmp_path):
    run_dir = str(tmp_path / "run")
    done = subprocess.run(train_command(dataset, run_dir, "--num-epochs", "2"), env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]
    truncate(runs.epoch_prefix(run_dir, 2) + ".params")
    again = subprocess.run(train_command(dataset, run_dir, "--num-epochs", "3", "--resume"), env=ENV,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    log = logged(os.path.join(run_dir, "train.log"))
    assert "epoch-0002.params cannot be loaded" in log and "resuming from the epoch before" in log
    assert "resuming after epoch 1 with the optimizer state of" in log
    checkpoint.check_loadable(run_dir, 2)           # epoch 2 trained again, whole
    assert runs.latest_epoch(run_dir) == 3
