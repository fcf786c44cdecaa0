"""Every command on bad input: a non-zero exit and one line `PROG: error: MESSAGE` that names
the file, never a traceback.

Each case is (command line, what the error line must contain, output to hold locked while it
runs or None), with `{name}` fields filled from the `world` fixture's files; add the rows of
another command to CASES.
"""
import contextlib
import os
import subprocess
import sys

import pytest

from data.bson_index import BsonIndex
from data.locks import output_lock
from data.split_train_bson import Split
from helpers import make_products, write_bson, write_categories


@contextlib.contextmanager
def read_only_folder(folder):
    """A folder nothing can be written into: a read-only tmpfs for root (whom permissions do
    not stop), else mode 0555."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Good and bad inputs, by name."""
    root = tmp_path_factory.mktemp("world")
    train = write_bson(str(root / "train.bson"), make_products(20, seed=1))
    raw = open(train, "rb").read()
    (root / "truncated.bson").write_bytes(raw[:len(raw) - 100])
    (root / "garbage.bson").write_bytes(os.urandom(5000))
    (root / "garbage.npz").write_bytes(os.urandom(3000))
    other = write_bson(str(root / "other.bson"), make_products(30, seed=2))
    Split.of_index(BsonIndex.load_or_build(other), seed=1, ratio=0.2).save(str(root / "other.split.npz"))
    (root / "a_file").write_text("not a folder")
    (root / "out").mkdir()
    names = {
        "train_bson": train,
        "test_bson": write_bson(str(root / "test.bson"), make_products(10, test=True, seed=3)),
        "categories": write_categories(root / "category_names.csv"),
        "truncated_bson": str(root / "truncated.bson"), "garbage_bson": str(root / "garbage.bson"),
        "missing_bson": str(root / "missing.bson"), "missing": str(root / "missing"),
        "garbage_npz": str(root / "garbage.npz"), "other_split": str(root / "other.split.npz"),
        "a_file": str(root / "a_file"), "out": str(root / "out"),
    }
    with read_only_folder(root / "read_only") as read_only:
        names["read_only"] = str(read_only) if read_only else None
        yield names


def bson2rec(*args):
    return ["-m", "data.bson2rec", *args]


def train_rec(*args):
    return bson2rec("{train_bson}", "--categories", "{categories}", *args)


def predict(*args):
    return ["-m", "predict.predict", "--out", "{out}/preds", *args]


def ensemble(*args):
    return ["-m", "predict.ensemble", "--categories", "{categories}", *args]


def train_options(*args):
    return ["-m", "train.train", "--network", "dpn_tiny", "--data-train", "{missing}.rec", *args]


CASES = {
    # id: (command line after the Python interpreter, the error line contains, output held locked)
    "bson2rec missing input": (bson2rec("{missing_bson}", "--out", "{out}/a.rec"), "{missing_bson}", None),
    "bson2rec garbage": (bson2rec("{garbage_bson}", "--out", "{out}/a.rec"), "{garbage_bson}: offset 0", None),
    "bson2rec truncated": (bson2rec("{truncated_bson}", "--out", "{out}/a.rec"), "{truncated_bson}: offset", None),
    "bson2rec train without categories": (bson2rec("{train_bson}", "--out", "{out}/a.rec"),
                                          "{train_bson} has category ids: pass --categories", None),
    "bson2rec missing categories": (bson2rec("{train_bson}", "--categories", "{missing}/c.csv", "--out",
                                             "{out}/a.rec"), "{missing}/c.csv", None),
    "bson2rec garbage split": (train_rec("--split", "{garbage_npz}", "--side", "train", "--out", "{out}/a.rec"),
                               "{garbage_npz}: not a readable split file", None),
    "bson2rec split of another file": (train_rec("--split", "{other_split}", "--side", "val", "--out",
                                                 "{out}/a.rec"), "does not belong to {train_bson}", None),
    "bson2rec split without side": (train_rec("--split", "{other_split}", "--out", "{out}/a.rec"),
                                    "--split and --side go together", None),
    "bson2rec garbage md5 dictionary": (train_rec("--single-label-md5", "{garbage_npz}", "--out", "{out}/a.rec"),
                                        "{garbage_npz}: not a readable MD5 dictionary", None),
    "bson2rec test with a category cap": (bson2rec("{test_bson}", "--max-per-category", "3", "--out",
                                                   "{out}/a.rec"), "{test_bson} has no category ids", None),
    "bson2rec out is a folder": (train_rec("--out", "{out}/"), "--out {out}/: the output must be a file path", None),
    "bson2rec out is not .rec": (train_rec("--out", "{out}/a.idx"), "--out {out}/a.idx: the output must be", None),
    "bson2rec no workers": (train_rec("--out", "{out}/a.rec", "--workers", "0"), "--workers: must be at least 1",
                            None),
    "bson2rec read-only folder": (train_rec("--out", "{read_only}/a.rec"), "{read_only}/", None),
    "bson2rec locked output": (train_rec("--out", "{out}/locked.rec"),
                               "{out}/locked.rec is being written by pid", "{out}/locked.rec"),

    "bson_index missing": (["-m", "data.bson_index", "{missing_bson}"], "{missing_bson}", None),
    "bson_index garbage": (["-m", "data.bson_index", "{garbage_bson}"], "{garbage_bson}: offset 0", None),
    "bson_index truncated": (["-m", "data.bson_index", "{truncated_bson}"], "{truncated_bson}: offset", None),
    "bson_index test file as train": (["-m", "data.bson_index", "--kind", "train", "{test_bson}"],
                                      "{test_bson}: offset 0", None),

    "split missing input": (["-m", "data.split_train_bson", "{missing_bson}", "--out", "{out}/A.split.npz"],
                            "{missing_bson}", None),
    "split garbage": (["-m", "data.split_train_bson", "{garbage_bson}", "--out", "{out}/A.split.npz"],
                      "{garbage_bson}: offset 0", None),
    "split bad ratio": (["-m", "data.split_train_bson", "{train_bson}", "--ratio", "2", "--out",
                         "{out}/A.split.npz"], "ratio must be in [0, 1]", None),
    "split read-only folder": (["-m", "data.split_train_bson", "{train_bson}", "--out", "{read_only}/A.split.npz"],
                               "{read_only}/", None),
    "split locked output": (["-m", "data.split_train_bson", "{train_bson}", "--out", "{out}/L.split.npz"],
                            "{out}/L.split.npz is being written by pid", "{out}/L.split.npz"),

    "md5_dict missing input": (["-m", "data.md5_dict", "{missing_bson}", "--out", "{out}/a.md5.npz"],
                               "{missing_bson}", None),
    "md5_dict test file": (["-m", "data.md5_dict", "{test_bson}", "--out", "{out}/a.md5.npz"], "{test_bson}", None),
    "md5_dict garbage split": (["-m", "data.md5_dict", "{train_bson}", "--split", "{garbage_npz}", "--out",
                                "{out}/a.md5.npz"], "{garbage_npz}: not a readable split file", None),
    "md5_dict no workers": (["-m", "data.md5_dict", "{train_bson}", "--workers", "0", "--out", "{out}/a.md5.npz"],
                            "--workers: must be at least 1", None),
    "md5_dict read-only folder": (["-m", "data.md5_dict", "{train_bson}", "--out", "{read_only}/a.md5.npz"],
                                  "{read_only}/", None),
    "md5_dict locked output": (["-m", "data.md5_dict", "{train_bson}", "--out", "{out}/L.md5.npz"],
                               "{out}/L.md5.npz is being written by pid", "{out}/L.md5.npz"),

    "synth out is a file": (["-m", "data.synth", "--out", "{a_file}", "--train-products", "5"], "{a_file}", None),
    "synth read-only folder": (["-m", "data.synth", "--out", "{read_only}/synth", "--train-products", "5"],
                               "{read_only}/", None),
    "synth bad option": (["-m", "data.synth", "--out", "{out}/synth", "--train-products", "-1"], "product counts must be >= 0",
                         None),
    "synth no product at all": (["-m", "data.synth", "--out", "{out}/empty_synth", "--train-products", "0",
                                  "--test-products", "0"], "no product to write", None),
    "synth locked output": (["-m", "data.synth", "--out", "{out}/locked_synth", "--train-products", "5"],
                            "{out}/locked_synth is being written by pid", "{out}/locked_synth"),

    # (predict and ensemble with trained models and prediction folders: tests/test_cli_bad_input_predict.py)
    "predict missing run folder": (predict("--input", "{test_bson}", "--models", "{missing}/run"),
                                   "{missing}/run: no such run folder or checkpoint", None),
    "predict missing input": (predict("--input", "{missing_bson}", "--models", "{out}"), "{missing_bson}", None),
    "predict garbage": (predict("--input", "{garbage_bson}", "--models", "{out}"), "{garbage_bson}: offset 0", None),
    "predict truncated": (predict("--input", "{truncated_bson}", "--models", "{out}"), "{truncated_bson}: offset",
                          None),
    "predict train file without categories": (predict("--input", "{train_bson}", "--models", "{out}"),
                                              "{train_bson} holds category ids", None),
    "predict input neither .bson nor .rec": (predict("--input", "{categories}", "--models", "{out}"),
                                             "{categories}: input must be a .bson or a .rec file", None),
    "predict unknown md5 mode": (predict("--input", "{test_bson}", "--models", "{out}", "--md5-mode", "nonsense"),
                                 "unknown MD5 mode(s) ['nonsense']", None),
    "predict negative stall timeout": (predict("--input", "{test_bson}", "--models", "{out}", "--stall-timeout", "-1"),
                                       "argument --stall-timeout: must be more than 0, got -1", None),
    "predict zero stall timeout": (predict("--input", "{test_bson}", "--models", "{out}", "--stall-timeout", "0"),
                                   "argument --stall-timeout: must be more than 0, got 0", None),
    "predict locked output": (predict("--input", "{test_bson}", "--models", "{out}", "--names", "locked"),
                              "{out}/preds/locked is being written by pid", "{out}/preds/locked"),
    "ensemble missing prediction folder": (ensemble("--preds", "{missing}/preds/m"),
                                           "{missing}/preds/m: no manifest.json", None),
    "ensemble submission neither .csv nor .csv.gz": (ensemble("--preds", "{missing}", "--submission", "{out}/s.zip"),
                                                     "{out}/s.zip: a submission is a .csv or a .csv.gz file", None),
    "ensemble read-only folder": (ensemble("--preds", "{missing}", "--submission", "{read_only}/s.csv.gz"),
                                  "{read_only}/s.csv.gz: cannot write the submission", None),
    "ensemble locked submission": (ensemble("--preds", "{missing}", "--submission", "{out}/locked.csv.gz"),
                                   "{out}/locked.csv.gz is being written by pid", "{out}/locked.csv.gz"),

    # (train's bad record files: tests/test_cli_bad_input_train.py)
    "train missing .rec": (["-m", "train.train", "--network", "dpn_tiny", "--data-train", "{missing}/A_train.rec",
                            "--model-dir", "{out}/run"], "training file {missing}/A_train.rec does not exist", None),
    "train no decoding threads": (["-m", "train.train", "--network", "dpn_tiny", "--data-train", "{missing}.rec",
                                   "--data-nthreads", "0"], "--data-nthreads: must be at least 1", None),
    "train locked run folder": (["-m", "train.train", "--network", "dpn_tiny", "--data-train", "{missing}.rec",
                                 "--model-dir", "{out}/locked_run"], "{out}/locked_run is being written by pid",
                                "{out}/locked_run"),
    # options the chosen backend does not honour (models.backends' capabilities and refusals)
    "train --kv-store with PyTorch": (train_options("--backend", "torch", "--kv-store", "dist_sync"),
                                      "--kv-store dist_sync needs --backend mxnet (PyTorch reduces gradients with "
                                      "DistributedDataParallel under torchrun", None),
    "train --decode-on device with MXNet": (train_options("--decode-on", "device"), "--decode-on device needs "
                                            "--backend torch (MXNet's ImageRecordIter decodes in its own threads)",
                                            None),
    "train --dtype bfloat16 with MXNet": (train_options("--dtype", "bfloat16"), "--dtype bfloat16 needs --backend "
                                          "torch (MXNet 1.9.1 has no bfloat16 training)", None),
    "train --compile with MXNet": (train_options("--backend", "mxnet", "--compile"), "--compile needs --backend torch "
                                   "(Gluon hybridizes its networks itself)", None),
    "predict --compile without a backend": (predict("--input", "{test_bson}", "--models", "{out}", "--compile"),
                                            "--compile needs --backend torch", None),
    "predict --compile with MXNet": (predict("--input", "{test_bson}", "--models", "{out}", "--backend", "mxnet",
                                             "--compile"), "--compile needs --backend torch", None),
    "launch no workers": (["-m", "train.mxnet_backend.launch", "-n", "0", "--", "true"], "--num-workers: must be at least 1", None),
    "models unknown network": (["-m", "models", "no_such_net"], "unknown model(s): no_such_net", None),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_ends_with_one_error_line_naming_the_file(case, world):
    argv, expected, locked = CASES[case]
    if any("{read_only}" in a for a in argv) and world["read_only"] is None:
        pytest.skip("no read-only folder here (root without mount)")
    argv, expected = [a.format(**world) for a in argv], expected.format(**world)
    with output_lock(locked.format(**world)) if locked else contextlib.nullcontext():
        result = subprocess.run([sys.executable, *argv, "--no-progress"], capture_output=True, text=True,
                                timeout=120)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode != 0, result.stderr
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
