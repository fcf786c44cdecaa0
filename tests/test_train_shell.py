"""The shell recipes: they turn the environment's settings into `train/train.py --recipe`'s
options, so that train/recipes.py's recipes run with them, arguments overriding, resuming,
and chaining phases.

Each script runs once with a stand-in PYTHON that records its arguments, which must expand
into the command lines the Python table gives for the same settings; and a few for real,
with tiny networks (``--network`` overrides the recipe's), 32x32 images and short epochs
(``--epoch-size``), on CPU (``GPUS=``)."""
import dataclasses
import glob
import json
import os
import subprocess

import pytest

from helpers import write_synthetic_dataset
from models.training_log import read_training_log
from train import recipes
from train.args import parse_args
from train.recipes import RECIPES, Settings, phase_arguments
from models import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(ROOT, "train", "train.py")
# Each per-network script and the recipe it runs (run folders named <network>_<dataset>).
SCRIPTS = {"train_densenet161.sh": "densenet161", "train_dpn92.sh": "dpn92", "train_dpn98.sh": "dpn98",
           "train_dpn107.sh": "dpn107", "train_dpn131.sh": "dpn131", "train_resnext101_32x4d.sh": "resnext101_32x4d",
           "train_resnext101_64x4d.sh": "resnext101_64x4d", "train_se_resnext101_64x4d.sh": "M13"}
# Every setting of shell/train_common.sh but MODEL_DIR and PARENT, and what it becomes (KV_STORE at
# the only value the PyTorch backend honours: it refuses the others).
ENVIRONMENT = {"REC_DIR": "/data/rec", "DATASET": "B", "GPUS": "0,1", "BATCH_SIZE": "64", "GRAD_ACCUM": "8",
               "NUM_EPOCHS": "12", "DTYPE": "float16", "KV_STORE": "device", "RUNS_DIR": "/runs",
               "PRETRAINED_DIR": "/weights", "NUM_CLASSES": "100", "REFERENCE_WD": "0", "RESUME": "0",
               "BACKEND": "torch"}
SETTINGS = Settings(rec_dir="/data/rec", runs_dir="/runs", pretrained_dir="/weights", dataset="B", num_epochs=12,
                    gpus="0,1")
EXTRA = ("--batch-size", "64", "--grad-accum", "8", "--dtype", "float16", "--kv-store", "device", "--num-classes", "100",
         "--backend", "torch", "--no-resume", "--no-wd-sgd-only")


def recorded(tmp_path, script, *arguments, **environment):
    """The arguments `script` gives train/train.py, run by a PYTHON that only records them
    (in an environment holding nothing else)."""
    record, fake = tmp_path / "argv", tmp_path / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$RECORD"\n')
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "PYTHON": str(fake), "RECORD": str(record), **environment}
    done = subprocess.run(["sh", os.path.join(ROOT, "shell", script), *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    argv = record.read_text().split("\0")[:-1]
    assert argv[0] == TRAIN_PY
    return argv[1:]


def expanded(recipe_argv):
    """Every phase's parsed train.py arguments, as `train.py --recipe` runs them."""
    request = recipes.parse_request(recipe_argv)
    return [vars(parse_args(argv)) for recipe in request.recipes
            for argv in phase_arguments(recipe, request.settings, request.extra)]


def table(names, settings, extra):
    """Every phase's parsed train.py arguments, from the Python table."""
    return [vars(parse_args(argv)) for name in names for argv in phase_arguments(RECIPES[name], settings, extra)]


def test_every_recipe_script_is_covered():
    scripts = {os.path.basename(path) for path in glob.glob(os.path.join(ROOT, "shell", "train_*.sh"))}
    assert scripts == set(SCRIPTS) | {"train_all.sh", "train_common.sh"}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_scripts_run_their_recipe_with_the_environments_settings(tmp_path, script):
    argv = recorded(tmp_path, script, "--lr", "5e-5", **ENVIRONMENT)
    settings = Settings(**{**vars(SETTINGS), "run_names": "network"})
    phases = expanded(argv)
    assert phases == table([SCRIPTS[script]], settings, (*EXTRA, "--lr", "5e-5"))
    assert (phases[0]["model_dir"], phases[-1]["num_epochs"]) == ("/runs/%s_B" % RECIPES[SCRIPTS[script]].network, 12)
    assert [(p["batch_size"], p["grad_accum"], p["resume"], p["wd_sgd_only"], p["lr"]) for p in phases] == \
        [(64, 8, False, False, 5e-5)] * len(phases)


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_scripts_leave_unset_settings_to_the_recipe(tmp_path, script):
    request = recipes.parse_request(recorded(tmp_path, script))
    assert [recipe.name for recipe in request.recipes] == [SCRIPTS[script]] and request.extra == ()
    assert dataclasses.replace(request.settings, run_names="model") == Settings()
    recipe = RECIPES[SCRIPTS[script]]
    assert expanded(recorded(tmp_path, script))[0]["model_dir"] == "work/runs/%s_%s" % (recipe.network, recipe.dataset)


def test_empty_gpus_and_pretrained_mean_the_cpu_and_no_weights(tmp_path):
    argv = recorded(tmp_path, "train_dpn92.sh", GPUS="", PRETRAINED="", MODEL_DIR="/m", REC_DIR="", DATASET="")
    (phase,) = expanded(argv)
    assert (phase["gpus"], phase["pretrained"], phase["model_dir"], phase["data_train"]) == \
        ("", None, "/m", "work/rec/A_train.rec")


def test_devices_spell_gpus_as_every_tool_does_and_win_over_them(tmp_path):
    gpus = recorded(tmp_path, "train_dpn92.sh", GPUS="0,1")
    assert gpus[gpus.index("--devices") + 1] == "gpu:0,gpu:1" and "--gpus" not in gpus
    assert recipes.parse_request(gpus).settings.gpus == "0,1"
    both = recorded(tmp_path, "train_dpn92.sh", GPUS="0,1", DEVICES="gpu:3")
    assert recipes.parse_request(both).settings.gpus == "3"
    assert [phase["gpus"] for phase in expanded(both)] == ["3"]


def test_se_resnext_script_takes_its_recipe_and_parent(tmp_path):
    argv = recorded(tmp_path, "train_se_resnext101_64x4d.sh", RECIPE="M11", PARENT="/p", RUNS_DIR="/runs")
    assert expanded(argv) == table(["M11"], Settings(runs_dir="/runs", parent="/p", run_names="network"), ())
    assert expanded(argv)[0]["model_dir"] == "/runs/se_resnext101_64x4d_A"
    refused = subprocess.run(["sh", os.path.join(ROOT, "shell", "train_se_resnext101_64x4d.sh")], cwd=ROOT,
                             env=dict(os.environ, RECIPE="M06"), capture_output=True, text=True)
    assert refused.returncode == 1 and "unknown RECIPE M06 (M11 or M13)" in refused.stderr


def test_train_all_runs_each_model_with_its_own_dataset_folder_and_parent(tmp_path):
    mine = dict(ENVIRONMENT, MODEL_DIR="/m", PARENT="/p")     # DATASET, MODEL_DIR, PARENT: each model's own
    everything = expanded(recorded(tmp_path, "train_all.sh", **mine))
    settings = Settings(**{**vars(SETTINGS), "dataset": None})
    assert everything == table(list(recipes.MODELS), settings, EXTRA)
    assert [p["model_dir"] for p in everything if p["num_epochs"] == 12] == \
        ["/runs/%s_%s" % (name, recipe.network) for name, recipe in recipes.MODELS.items()]
    assert expanded(recorded(tmp_path, "train_all.sh", "M13", "M06", "--lr", "1", **mine)) == \
        table(["M13", "M06"], settings, (*EXTRA, "--lr", "1"))
    assert expanded(recorded(tmp_path, "train_all.sh", "--lr", "1")) == table(list(recipes.MODELS), Settings(),
                                                                              ("--lr", "1"))
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
    with open(runs.epoch_prefix(run_dir, epoch) + ".json") as f:
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


def test_train_all_rejects_unknown_models_before_training_any(tmp_path):
    done = subprocess.run(["sh", os.path.join(ROOT, "shell", "train_all.sh"), "M06", "M15"], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, RUNS_DIR=str(tmp_path), GPUS=""))
    assert done.returncode == 2 and done.stderr.startswith("train: error: unknown recipe M15: choose from M01")
    assert len(done.stderr.splitlines()) == 1 and not os.listdir(tmp_path)


def test_se_resnext_recipe_starts_from_its_parent_in_two_phases(rec_dir, tmp_path):
    runs_root = str(tmp_path / "runs")
    parent = recipe("train_resnext101_64x4d.sh", rec_dir, runs_root, "--network", "resnext_tiny", *FAST, NUM_EPOCHS="1")
    assert parent.returncode == 0, parent.stderr[-2000:]
    done = recipe("train_se_resnext101_64x4d.sh", rec_dir, runs_root, "--network", "se_resnext_tiny", *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = os.path.join(runs_root, "se_resnext101_64x4d_A")
    assert runs.complete_epochs(run_dir) == list(range(1, 14))
    first, second = saved_args(run_dir, 11), saved_args(run_dir, 13)
    assert first["from_run"] == os.path.join(runs_root, "resnext101_64x4d_A")
    assert (first["max_random_h"], first["random_mirror"], first["dropout"]) == (20, 1, 0.2)
    assert (second["load_epoch"], second["max_random_h"], second["random_mirror"]) == (11, 0, 0)
    assert "train: M13, phase 1 of 2: " in done.stderr and "train: M13, phase 2 of 2: " in done.stderr
    assert "copied the classifier" in done.stderr
    assert "resuming after epoch 11 with the optimizer state" in done.stderr   # same optimizer: state kept
