"""The shell recipes: they pass the reference's hyperparameters to train/train.py, take the
environment's settings, let arguments override, resume, and chain phases.

The recipes are run for real, with tiny networks (``--network`` overrides the recipe's),
32x32 images and short epochs (``--epoch-size``), on CPU (``GPUS=``)."""
import json
import os
import subprocess

import pytest

from predict.logs import read_training_log
from recfixtures import write_synthetic_dataset
from train import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--image-shape", "3,32,32", "--epoch-size", "64", "--no-progress", "--disp-batches", "1000"]


@pytest.fixture(scope="module")
def rec_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("rec"))
    write_synthetic_dataset(folder, num_classes=6, train_products=60, val_products=20, seed=41)
    return folder


def recipe(script, rec_dir, runs_dir, *arguments, **settings):
    env = dict(os.environ, OMP_NUM_THREADS="1", REC_DIR=rec_dir, RUNS_DIR=runs_dir, DATASET="A", NUM_CLASSES="6",
               BATCH_SIZE="32", GPUS="", PRETRAINED="", **settings)
    return subprocess.run(["sh", os.path.join(ROOT, "shell", script), *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def saved_args(run_dir, epoch):
    with open(checkpoint.epoch_prefix(run_dir, epoch) + ".json") as f:
        return json.load(f)["args"]


def test_dpn92_recipe_carries_the_reference_hyperparameters(rec_dir, tmp_path):
    runs = str(tmp_path / "runs")
    done = recipe("train_dpn92.sh", rec_dir, runs, "--network", "dpn_tiny", "--lr", "3e-4", *FAST, NUM_EPOCHS="1")
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = os.path.join(runs, "dpn92_A")
    args = saved_args(run_dir, 1)
    assert (args["optimizer"], args["lr_step_epochs"], args["lr_factor"], args["label_smoothing"]) == \
        ("nadam", [8, 10], 0.2, 0.1)
    assert args["lr"] == 3e-4 and args["network"] == "dpn_tiny"          # the arguments win
    assert args["wd_sgd_only"] and args["resume"] and args["batch_size"] == 32 and args["gpus"] == ""
    assert args["data_train"] == os.path.join(rec_dir, "A_train.rec")
    assert read_training_log(os.path.join(run_dir, "train.log")).args["kv_store"] == "device"

    again = recipe("train_dpn92.sh", rec_dir, runs, "--network", "dpn_tiny", *FAST, NUM_EPOCHS="1")
    assert again.returncode == 0 and "nothing to train" in again.stderr


def test_train_all_rejects_unknown_models(tmp_path):
    done = subprocess.run(["sh", os.path.join(ROOT, "shell", "train_all.sh"), "M15"], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, RUNS_DIR=str(tmp_path)))
    assert done.returncode == 1 and "unknown model M15" in done.stderr


def test_se_resnext_recipe_starts_from_its_parent_in_two_phases(rec_dir, tmp_path):
    runs = str(tmp_path / "runs")
    parent = recipe("train_resnext101_64x4d.sh", rec_dir, runs, "--network", "resnext_tiny", *FAST, NUM_EPOCHS="1")
    assert parent.returncode == 0, parent.stderr[-2000:]
    done = recipe("train_se_resnext101_64x4d.sh", rec_dir, runs, "--network", "se_resnext_tiny", *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = os.path.join(runs, "se_resnext101_64x4d_A")
    assert checkpoint.complete_epochs(run_dir) == list(range(1, 14))
    first, second = saved_args(run_dir, 11), saved_args(run_dir, 13)
    assert first["from_run"] == os.path.join(runs, "resnext101_64x4d_A")
    assert (first["max_random_h"], first["random_mirror"], first["dropout"]) == (20, 1, 0.2)
    assert (second["load_epoch"], second["max_random_h"], second["random_mirror"]) == (11, 0, 0)
    assert "copied the classifier" in done.stderr
    assert "resuming after epoch 11 with the optimizer state" in done.stderr   # same optimizer: state kept
