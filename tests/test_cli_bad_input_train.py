"""`train/train.py` on bad input, at the command line: a non-zero exit, one line
`train: error: MESSAGE` naming the file (and the record, product or line where known), and
no traceback.

Each case is (name, arguments after the common ones, expected part of the error line); the
arguments may name files of the `inputs` folder as {name}. (A missing `.rec`, a locked run
folder and a bad option are rows of tests/test_cli_bad_input.py.)"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data.recordio import read_headers, read_idx
from helpers import (damage_record, synthetic_pictures, synthetic_products, write_pictures_rec, write_report,
                     write_synthetic_dataset, write_synthetic_rec)
from recfixtures import write_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 4


def _copy(rec, folder, name, with_index=True):
    shutil.copy(rec, os.path.join(folder, name + ".rec"))
    if with_index:
        shutil.copy(rec[:-4] + ".idx", os.path.join(folder, name + ".idx"))
    return os.path.join(folder, name + ".rec")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of good and bad training inputs."""
    folder = str(tmp_path_factory.mktemp("bad"))
    good = write_synthetic_dataset(folder, NUM_CLASSES, train_products=40, val_products=10, seed=4)
    train = good["train"]
    _copy(train, folder, "lonely", with_index=False)
    with open(_copy(train, folder, "short_index")[:-4] + ".idx", "r+") as f:        # a truncated .idx
        f.truncate(len("".join(f.readlines()[:20])))
    _copy(train, folder, "garbage_index")
    with open(os.path.join(folder, "garbage_index.idx"), "wb") as f:
        f.write(bytes(range(256)))
    _copy(train, folder, "foreign_index")
    shutil.copy(good["val"][:-4] + ".idx", os.path.join(folder, "foreign_index.idx"))
    with open(_copy(train, folder, "cut"), "r+b") as f:                         # a truncated .rec
        f.truncate(int(read_idx(train[:-4] + ".idx")[-1]) + 40)
    _copy(train, folder, "no_report")
    with open(os.path.join(folder, "no_report.report.json"), "w") as f:
        f.write('{"records": 1')                                                # cut short
    labels, pids, numbers = synthetic_products(40, NUM_CLASSES, 6)
    n = len(labels) // 16 * 16
    labels, pids, numbers = labels[:n], pids[:n], numbers[:n]
    pictures = synthetic_pictures(labels, 6, NUM_CLASSES)
    write_pictures_rec(os.path.join(folder, "test"), np.full(n, -1), pids, numbers, pictures)
    for name, bad in (("random_bytes", bytes(np.random.RandomState(0).randint(0, 256, 600, np.uint8))),
                      ("empty_picture", b"")):
        write_pictures_rec(os.path.join(folder, name), labels, pids, numbers,
                           pictures[:n // 2] + [bad] + pictures[n // 2 + 1:])
    args = {"model": "dpn_tiny", "classes": NUM_CLASSES, "args": {"optimizer": "nadam", "dtype": "float32"}}
    run = write_checkpoints(os.path.join(folder, "run"), 1, args["model"], args["classes"], args["args"])
    with open(os.path.join(run, "epoch-0001.params"), "r+b") as f:
        f.truncate(100)
    # (the records before the bad picture are the same in both files, and so its offset)
    offset = int(read_idx(os.path.join(folder, "random_bytes.idx"))[n // 2])
    for suffix in ("pth", "safetensors"):                                      # ImageNet weights of random bytes
        with open(os.path.join(folder, "garbage." + suffix), "wb") as f:
            f.write(bytes(np.random.RandomState(1).randint(0, 256, 5000, np.uint8)))
    # A record changed after the conversion, the .idx and report kept (issue 21): one in the middle of
    # a file of 300 records, which open_record_file's 101 samples leave out (read only where it is used).
    many = write_synthetic_rec(os.path.join(folder, "many"), 150, NUM_CLASSES, seed=5)[0]
    count = len(read_idx(many[:-4] + ".idx"))
    middle = min(set(range(count // 2, count)) - set(np.linspace(0, count - 1, 101).astype(np.int64).tolist()))
    header = read_headers(many, read_idx(many[:-4] + ".idx"))[middle]
    for name, field, value in (("no_magic", "magic", 0), ("no_length", "length", 0), ("relabelled", "label", 50.0),
                               ("fractional", "label", 2.5)):
        write_report(_copy(many, folder, name), NUM_CLASSES)
        damaged_at = damage_record(os.path.join(folder, name + ".rec"), middle, field, value)
    return dict(folder=folder, train=train, record=n // 2, offset=offset, product=int(pids[n // 2]),
                image=int(numbers[n // 2]), middle=middle, damaged_at=damaged_at,
                length_end=damaged_at + 8, damaged_product=int(header["id"]), damaged_image=int(header["id2"]))


# A record changed after its conversion, read by each backend and decoding place.
READERS = {"mxnet": [], "torch": ["--backend", "torch"], "torch on the device": ["--backend", "torch", "--decode-on",
                                                                                "device"]}
DAMAGED = "{folder}/%s.rec: offset {damaged_at}: record {middle} "
CHANGED = "{folder}/%s.rec: offset {damaged_at}, product {damaged_product}: record {middle} (image {damaged_image}) "


CASES = [
    (".rec without .idx", ["--data-train", "{folder}/lonely.rec"], "has no index {folder}/lonely.idx"),
    ("truncated .idx", ["--data-train", "{folder}/short_index.rec"],
     "training index {folder}/short_index.idx does not cover {folder}/short_index.rec: the index lists 20 records"),
    ("garbage .idx", ["--data-train", "{folder}/garbage_index.rec"], "{folder}/garbage_index.idx: line 1 is not"),
    (".idx of another .rec", ["--data-train", "{folder}/foreign_index.rec"],
     "record 1 of {folder}/foreign_index.idx: no record starts here: the index does not belong to this .rec"),
    ("truncated .rec", ["--data-train", "{folder}/cut.rec"], "the record runs past the end of the file"),
    ("damaged report", ["--data-train", "{folder}/no_report.rec"],
     "{folder}/no_report.report.json is not a conversion report"),
    ("labels beyond --num-classes", ["--data-train", "{train}", "--num-classes", "2"],
     "A_train.rec: offset"),
    ("test side (labels -1)", ["--data-train", "{folder}/test.rec"], "{folder}/test.rec: offset 0, product 0: "
                                                                     "record 0 (image 0) has label -1"),
    ("random bytes as a picture", ["--data-train", "{folder}/random_bytes.rec"],
     "{folder}/random_bytes.rec: offset {offset}, product {product}: record {record}, image {image} is not a "
     "decodable JPEG (600 bytes)"),
    ("empty picture", ["--data-train", "{folder}/empty_picture.rec"],
     "{folder}/empty_picture.rec: offset {offset}, product {product}: record {record}, image {image} is not a "
     "decodable JPEG (0 bytes)"),
    ("validation .rec missing", ["--data-train", "{train}", "--data-val", "{folder}/none.rec"],
     "validation file {folder}/none.rec does not exist"),
    ("truncated checkpoint", ["--data-train", "{train}", "--model-dir", "{folder}/run", "--load-epoch", "1"],
     "{folder}/run/epoch-0001.params cannot be loaded"),
    ("missing parent run", ["--data-train", "{train}", "--from-run", "{folder}/nothing"],
     "{folder}/nothing is neither a run folder nor an epoch-NNNN.params checkpoint"),
    ("missing ImageNet weights", ["--data-train", "{train}", "--pretrained", "{folder}/dpn.params"],
     "ImageNet weights {folder}/dpn.params not found"),
    ("negative batch size", ["--data-train", "{train}", "--batch-size", "-16"],
     "argument --batch-size: must be at least 1, got -16"),
    ("negative epoch size", ["--data-train", "{train}", "--epoch-size", "-5"],
     "--epoch-size must be 0 (a full pass) or more"),
    *[(f"garbage ImageNet weights (.{suffix})", ["--backend", "torch", "--data-train", "{train}", "--pretrained",
                                                 "{folder}/garbage.%s" % suffix],
       "{folder}/garbage.%s cannot be read as PyTorch weights (%s: " % (suffix, error))
      for suffix, error in (("pth", "UnpicklingError"), ("safetensors", "SafetensorError"))],
    # checked before torchrun starts (which printed it once per process, then its own traceback); on a machine
    # of one GPU: "GPUs 0,97: GPU 97 asked for but this machine has 1"
    ("GPUs this machine lacks, for torchrun", ["--backend", "torch", "--devices", "gpu:0,gpu:97", "--data-train",
                                               "{train}"], "97 asked for but this "),
    *[(f"record without its magic word ({reader})", [*options, "--data-train", "{folder}/no_magic.rec"],
       DAMAGED % "no_magic" + "is damaged: its frame (magic word 0x00000000")
      for reader, options in READERS.items()],
    *[(f"record of length 0 ({reader})", [*options, "--data-train", "{folder}/no_length.rec"],
       DAMAGED % "no_length" + "ends at offset {length_end} but the index puts record")
      for reader, options in READERS.items()],
    *[(f"label changed in the file ({reader})", [*options, "--data-train", "{folder}/relabelled.rec"],
       CHANGED % "relabelled" + "has label 50, not a class id of the network's --num-classes 4 outputs (0..3)")
      for reader, options in READERS.items()],
    *[(f"fractional label ({reader})", [*options, "--data-train", "{folder}/fractional.rec"],
       CHANGED % "fractional" + "has label 2.5, ") for reader, options in READERS.items()],
]


@pytest.mark.parametrize("name, arguments, expected", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gives_one_error_line(inputs, tmp_path, name, arguments, expected):
    argv = [a.format(**inputs) for a in arguments]
    if "--model-dir" not in argv:
        argv += ["--model-dir", str(tmp_path / "run")]
    done = subprocess.run([sys.executable, os.path.join(ROOT, "train", "train.py"), "--network", "dpn_tiny",
                           "--num-classes", str(NUM_CLASSES), "--image-shape", "3,32,32", "--batch-size", "16",
                           "--num-epochs", "1", "--no-progress", *argv], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("train: error: ")] == lines[-1:], done.stderr[-3000:]
    assert expected.format(**inputs) in lines[-1]
