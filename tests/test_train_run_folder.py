"""The run-folder contract (``models.runs``) and the training configuration
(``train.config``): both formats of an epoch's JSON, and resuming a run written before
the format had a number. No framework is needed: the weights are stand-in bytes."""
import json
import logging
import os
import subprocess
import sys

import pytest

from train import fit
from train.args import parse_args, parse_config
from train.config import TrainConfig, changed_options
from models import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# epoch-0002.json of a run written before the format had a number (format 1), as train/fit.py
# wrote it then: `args` is argparse's namespace, no format, framework or channel order.
FORMAT_1_ARGS = {
    "batch_size": 512, "cpu_devices": 1, "data_nthreads": 4, "data_train": "/rec/A_train.rec",
    "data_val": "/rec/A_val.rec", "debug": False, "disp_batches": 20, "dropout": 0.0, "dtype": "float32",
    "epoch_size": 0, "freeze_epochs": 0, "freeze_keep": "^output\\.", "from_run": None, "gpus": "",
    "grad_accum": 1, "image_shape": [3, 32, 32], "kv_store": "device", "label_smoothing": 0.1, "load_epoch": None,
    "lr": 0.0001, "lr_factor": 0.2, "lr_step_epochs": [10, 13, 15], "max_random_h": 0, "max_random_l": 0,
    "max_random_s": 0, "max_random_scale": 1.0, "min_random_scale": 1.0, "model_dir": "runs/dpn_tiny",
    "mom": 0.9, "network": "dpn_tiny", "normalization": "raw", "num_classes": 3, "num_epochs": 15,
    "optimizer": "nadam", "pretrained": None, "progress": True, "random_crop": 0, "random_mirror": 1,
    "resize": -1, "resume": False, "seed": 0, "top_k": 5, "warmup_begin_lr": 0.0, "warmup_epochs": 0.0,
    "wd": 4e-05, "wd_sgd_only": False}
HISTORY = {"epoch": 2, "lr": 0.0001, "time_cost": 3.5, "samples_per_sec": 91.4,
           "train": {"accuracy": 0.5, "cross-entropy": 1.2, "loss": 1.25}, "val": {"accuracy": 0.6}}
FORMAT_1_META = {"model": "dpn_tiny", "classes": 3, "epoch": 2, "args": FORMAT_1_ARGS,
                 "metrics": {"train": HISTORY["train"], "val": HISTORY["val"]}, "history": HISTORY,
                 "mean": [0.0, 0.0, 0.0], "scale": 1.0, "normalization": "raw", "dropout": 0.0,
                 "image_shape": [3, 32, 32], "dtype": "float32", "num_workers": 1}
CLI = ["--network", "dpn_tiny", "--data-train", "/rec/A_train.rec", "--data-val", "/rec/A_val.rec",
       "--num-classes", "3", "--image-shape", "3,32,32"]


def format_1_run(run_dir, epochs=(1, 2)):
    """A run folder of format 1: the JSON above per epoch, stand-in weight and state files."""
    os.makedirs(run_dir)
    for epoch in epochs:
        for suffix in (".params", ".states"):
            with open(runs.epoch_prefix(run_dir, epoch) + suffix, "wb") as f:
                f.write(b"weights")
        with open(runs.epoch_prefix(run_dir, epoch) + ".json", "w") as f:
            json.dump(dict(FORMAT_1_META, epoch=epoch, args=dict(FORMAT_1_ARGS, model_dir=run_dir)), f)
    return run_dir


def quiet_logger():
    logger = logging.getLogger("test_train_run_folder")
    logger.addHandler(logging.NullHandler())
    return logger


def test_a_format_1_run_loads_for_prediction(tmp_path):
    run_dir = format_1_run(str(tmp_path / "run"))
    meta = runs.read_meta(run_dir)
    assert (meta["format"], meta["framework"], meta["epoch"], meta["model"], meta["classes"]) == \
           (1, "mxnet", 2, "dpn_tiny", 3)
    assert meta["params"] == runs.epoch_prefix(run_dir, 2) + ".params"
    assert runs.preprocessing(meta) == runs.Preprocessing((3, 32, 32), "RGB", (0.0, 0.0, 0.0), 1.0, "raw")
    assert runs.read_meta(runs.epoch_prefix(run_dir, 1) + ".params")["epoch"] == 1


def test_a_format_1_run_resumes(tmp_path):
    run_dir = format_1_run(str(tmp_path / "run"))
    checked = []
    config = parse_config(CLI + ["--model-dir", run_dir, "--resume"])
    start = fit.start_point(config, quiet_logger(), lambda *place, states: checked.append((*place, states)))
    assert (start.epoch, start.params, start.states) == (2, runs.epoch_prefix(run_dir, 2) + ".params",
                                                          runs.epoch_prefix(run_dir, 2) + ".states")
    assert checked == [(run_dir, 2, True)]
    assert changed_options(FORMAT_1_ARGS, config) == []
    changed = parse_config(CLI + ["--model-dir", run_dir, "--lr", "0.01", "--lr-step-epochs", "4,6"])
    assert changed_options(FORMAT_1_ARGS, changed) == [("lr", 0.0001, 0.01), ("lr_step_epochs", [10, 13, 15], [4, 6])]


def test_format_2_metadata_round_trip(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    config = parse_config(CLI + ["--model-dir", run_dir])
    preprocess = runs.Preprocessing((3, 32, 32), "RGB", (124.0, 117.0, 104.0), 0.0167, "imagenet")
    meta = runs.epoch_meta("mxnet", "dpn_tiny", 3, preprocess, config, HISTORY, 0.0, "float32", 1)
    with open(runs.params_path(run_dir, 2), "wb") as f:
        f.write(b"weights")
    runs.write_epoch_meta(run_dir, 2, meta)
    read = runs.read_meta(run_dir)
    assert (read["format"], read["framework"], read["epoch"]) == (runs.FORMAT_VERSION, "mxnet", 2)
    assert runs.preprocessing(read) == preprocess
    assert read["args"] == config.flat() and read["history"] == HISTORY
    # what format 1 held, format 2 holds under the same names (predict and the reports read them)
    assert set(FORMAT_1_META) <= set(read)
    assert runs.write_metrics_history(run_dir, 2) == [HISTORY]


def test_the_configuration_holds_every_option_once():
    args = parse_args(CLI)
    config = TrainConfig.from_args(args)
    assert sorted(config.flat()) == sorted(vars(args))
    assert config.flat() == json.loads(json.dumps(vars(args)))
    assert config.schedule.lr_step_epochs == (10, 13, 15) and config.data.image_shape == (3, 32, 32)


def test_the_contract_and_the_command_line_load_no_framework():
    code = ("import sys; sys.modules['mxnet'] = None; sys.modules['torch'] = None\n"
            "import models.runs, train.config, train.backend, train.schedule, train.args, train.inputs, data.record_file\n"
            "train.args.parse_config(%r)" % CLI)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("path, message", [("nowhere", "neither a run folder"), ("epoch-0003.params", "not complete")])
def test_read_meta_names_what_is_missing(tmp_path, path, message):
    format_1_run(str(tmp_path / "run"))
    with pytest.raises(runs.CheckpointError, match=message):
        runs.read_meta(str(tmp_path / "run" / path))
