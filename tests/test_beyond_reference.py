"""Beyond the reference's networks (issue 22), the parts that need no framework: timm's
networks as a family named by a pattern, refused on MXNet in one line by training, the
predictor and the listing; run folders that say which weights format they hold; the cosine
schedule; the options MXNet does not have (AdamW, a moving average of the weights); the
recipes of today's backbones; and the Kaggle score of a submission. (Training, prediction
and the pretrained weights of timm's networks: tests/torch/test_timm.py.)"""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from data.images import network_input
from helpers import write_synthetic_rec
from models import runs
from models.families import ArchitectureError, architecture, config_overrides, family_of, layer_table, network_names
from models.families.timm_models import TimmConfig, sized
from predict import score
from predict.checkpoints import CheckpointModel
from train.args import parse_config
from train.recipes import MODERN, RECIPES, Settings, phase_arguments, recipes_named
from train.schedule import learning_rate_at

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--data-train", "x.rec", "--network", "dpn_tiny"]
PYTORCH_ONLY = "the timm networks exist on PyTorch only (--backend torch), not on MXNet"


def error_lines(command):
    """The command's stderr lines; it must fail with one `PROG: error:` line, last, no traceback."""
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert [line for line in lines if ": error: " in line] == lines[-1:], done.stderr
    return lines


def refusal(capsys, argv):
    with pytest.raises(SystemExit) as done:
        parse_config(argv)
    assert done.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


# --- the family --------------------------------------------------------------------

def test_any_timm_name_is_a_network_of_the_timm_family_without_timm():
    assert architecture("timm/convnext_small") == ("timm", TimmConfig("convnext_small"))
    assert architecture("timm/convnext_tiny.fb_in1k")[1].name == "convnext_tiny.fb_in1k"
    family = family_of("timm/eva02_small_patch14_224")
    assert (family.name, family.weights_format, family.default_weights) == ("timm", runs.SAFETENSORS, "timm")
    assert family.layers is None and sorted(family.builders) == ["torch"]
    assert not any(name.startswith("timm/") for name in network_names())
    with pytest.raises(KeyError, match="known models: .*timm/<name>"):
        family_of("timm/")
    with pytest.raises(ArchitectureError, match="no Gluon twin"):
        layer_table("timm/convnext_small")
    # the input size a run records for a network built for it (ViTs)
    config = sized(TimmConfig("test_vit"), (3, 32, 48))
    assert config_overrides("timm/test_vit", config) == {"img_size": (32, 48)}
    assert architecture("timm/test_vit", {"img_size": [32, 48]})[1].img_size == [32, 48]
    assert "torch" not in sys.modules and "timm" not in sys.modules


def test_training_refuses_a_timm_network_on_mxnet_in_one_line():
    for backend in ([], ["--backend", "mxnet"]):
        lines = error_lines(["train/train.py", "--network", "timm/convnext_small", "--data-train", "x.rec", *backend])
        assert lines[-1] == "train: error: --network timm/convnext_small: " + PYTORCH_ONLY


def test_the_listing_refuses_a_timm_network_on_mxnet_in_one_line():
    lines = error_lines(["-m", "models", "--list", "timm/resnet18", "--backend", "mxnet"])
    assert lines[-1] == "python -m models: error: " + PYTORCH_ONLY


@pytest.fixture()
def timm_run(tmp_path):
    """A run folder of a timm network as the PyTorch backend writes it (the weights are not
    read: the refusals come before)."""
    run = tmp_path / "runs" / "timm_test_convnext_A"
    run.mkdir(parents=True)
    meta = {"format": 2, "framework": "torch", "weights_format": runs.SAFETENSORS, "model": "timm/test_convnext",
            "classes": 6, "epoch": 1, "image_shape": [3, 32, 32], "mean": [127.5] * 3, "scale": [0.01, 0.02, 0.03],
            "args": {}, "history": {}}
    (run / "epoch-0001.json").write_text(json.dumps(meta))
    (run / "epoch-0001.safetensors").write_bytes(b"")
    return run


def test_the_predictor_refuses_a_timm_run_on_mxnet_in_one_line(timm_run, tmp_path):
    rec = write_synthetic_rec(str(tmp_path / "val"), 4, 6, seed=1)[0]
    lines = error_lines(["predict/predict.py", "--input", rec, "--models", str(timm_run), "--backend", "mxnet",
                         "--out", str(tmp_path / "preds"), "--decoders", "0", "--no-progress"])
    assert lines[-1] == "predict: error: %s holds a timm/test_convnext: %s" % (
        timm_run / "epoch-0001.safetensors", PYTORCH_ONLY)
    # the run's own backend (PyTorch) is chosen without --backend
    handle = CheckpointModel(str(timm_run))
    assert handle.backend.name == "torch" and handle.preprocessing.scale == (0.01, 0.02, 0.03)
    with pytest.raises(runs.CheckpointError, match="no moving average .* predict without --ema"):
        CheckpointModel(str(timm_run), ema=True).meta


# --- run folders ---------------------------------------------------------------------

def test_a_run_folder_says_which_weights_it_holds_and_every_epoch_of_either_format_counts(tmp_path):
    run = str(tmp_path)
    assert runs.params_path(run, 3).endswith("epoch-0003.params")
    assert runs.params_path(run, 3, runs.SAFETENSORS).endswith("epoch-0003.safetensors")
    assert runs.ema_path(run, 3, runs.SAFETENSORS).endswith("epoch-0003.ema.safetensors")
    for epoch, weights_format, ema in ((1, runs.GLUON_PARAMS, False), (2, runs.SAFETENSORS, True)):
        meta = runs.epoch_meta("torch", "x", 4, runs.Preprocessing((3, 8, 8), "RGB", (1.0, 2.0, 3.0), (0.5, 0.25, 1.0),
                                                                   "imagenet"),
                               parse_config(COMMON), {"epoch": epoch, "train": {}, "val": {}}, 0.0, "float32", 1,
                               weights_format=weights_format, ema=ema)
        open(runs.params_path(run, epoch, weights_format), "wb").close()
        runs.write_epoch_meta(run, epoch, meta)
    open(runs.params_path(run, 3, runs.SAFETENSORS), "wb").close()       # no JSON: not complete
    assert runs.complete_epochs(run) == [1, 2]
    latest = runs.read_meta(run)
    assert latest["params"] == runs.params_path(run, 2, runs.SAFETENSORS)
    assert latest["ema_params"] == runs.ema_path(run, 2, runs.SAFETENSORS)
    assert runs.preprocessing(latest).scale == (0.5, 0.25, 1.0)
    assert runs.resolve_checkpoint(runs.params_path(run, 2, runs.SAFETENSORS)) == (run, 2)
    first = runs.read_meta(run, 1)
    assert (runs.weights_format(first), "ema_params" in first) == (runs.GLUON_PARAMS, False)
    with pytest.raises(runs.CheckpointError, match="format 'onnx'"):
        runs.weights_format({"weights_format": "onnx"})


def test_a_per_channel_scale_normalises_each_channel():
    pixels = np.random.RandomState(0).randint(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    scale = (1 / 58.395, 1 / 57.12, 1 / 57.375)
    x = network_input(runs.Preprocessing((3, 8, 8), "RGB", (123.675, 116.28, 103.53), scale, "imagenet"), pixels)
    expected = (pixels.transpose(0, 3, 1, 2).astype(np.float32) -
                np.float32([123.675, 116.28, 103.53]).reshape(1, 3, 1, 1)) * np.float32(scale).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(x, expected)


# --- schedule and options ------------------------------------------------------------

def test_the_cosine_schedule_falls_from_the_rate_to_the_floor_after_its_warm_up():
    cosine = dict(base_lr=1e-3, schedule="cosine", cosine_epochs=10, min_lr=1e-5)
    assert learning_rate_at(0.0, **cosine) == pytest.approx(1e-3)
    assert learning_rate_at(5.0, **cosine) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate_at(10.0, **cosine) == pytest.approx(1e-5) == learning_rate_at(12.0, **cosine)
    assert learning_rate_at(2.5, **cosine) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi / 4)) / 2)
    warm = dict(cosine, warmup_epochs=1.0, warmup_begin_lr=0.0)
    assert learning_rate_at(0.0, **warm) == 0.0
    assert learning_rate_at(0.5, **warm) == pytest.approx(learning_rate_at(0.5, **cosine) / 2)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        learning_rate_at(1.0, 1e-3, schedule="linear")
    config = parse_config(COMMON + ["--lr-schedule", "cosine", "--num-epochs", "6"])
    assert (config.schedule.lr_schedule, config.schedule.cosine_epochs) == ("cosine", 6.0)
    assert parse_config(COMMON).schedule.cosine_epochs is None


@pytest.mark.parametrize("extra, expected", [
    (["--optimizer", "adamw"], "--optimizer adamw needs --backend torch (MXNet 1.9.1 has no AdamW optimizer"),
    (["--ema-decay", "0.999"], "--ema-decay 0.999 needs --backend torch (the MXNet backend keeps no moving average"),
    (["--backend", "torch", "--ema-eval"], "--ema-eval validates the moving average of the weights: give --ema-decay"),
    (["--backend", "torch", "--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    (["--backend", "torch", "--pretrained", "timm"], "--pretrained timm loads a timm network's own ImageNet weights; "
                                                     "dpn_tiny takes a file (--pretrained FILE)"),
])
def test_options_mxnet_or_the_network_cannot_honour_are_refused_in_one_line(capsys, extra, expected):
    assert refusal(capsys, COMMON + extra).startswith("train: error: " + expected)


def test_the_pytorch_backend_takes_them():
    config = parse_config(COMMON + ["--backend", "torch", "--optimizer", "adamw", "--ema-decay", "0.9", "--ema-warmup",
                                    "--ema-eval"])
    assert (config.optimizer.optimizer, config.ema.ema_decay, config.ema.ema_warmup, config.ema.ema_eval) == \
        ("adamw", 0.9, True, True)
    assert parse_config(["--data-train", "x.rec", "--network", "timm/x", "--backend", "torch", "--pretrained",
                         "timm"]).network.pretrained == "timm"


# --- recipes -----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODERN))
def test_the_modern_recipes_run_on_pytorch_with_their_own_settings(name):
    [argv] = phase_arguments(MODERN[name], Settings(rec_dir="/rec", runs_dir="/runs", gpus="0"))
    config = parse_config(argv)
    assert config.network.network.startswith("timm/") and config.compute.backend == "torch"
    assert (config.network.pretrained, config.network.normalization, config.data.image_shape) == \
        ("timm", "imagenet", (3, 192, 192))
    assert (config.optimizer.optimizer, config.optimizer.wd, config.optimizer.label_smoothing) == ("adamw", 0.05, 0.1)
    assert (config.schedule.lr_schedule, config.schedule.cosine_epochs, config.schedule.warmup_epochs) == \
        ("cosine", 8.0, 0.25)
    assert (config.ema.ema_decay, config.ema.ema_warmup, config.ema.ema_eval) == (0.9999, True, True)
    assert config.augmentation.random_crop and config.augmentation.max_random_scale == 1.3
    assert recipes_named([name]) == (MODERN[name],) and name not in RECIPES and name not in recipes_named(["all"])


def test_a_modern_recipe_on_mxnet_is_refused_in_one_line(capsys):
    [argv] = phase_arguments(MODERN["T01"], Settings(gpus=""), ("--backend", "mxnet"))
    assert refusal(capsys, argv) == "train: error: --network timm/convnext_tiny: " + PYTORCH_ONLY


def test_train_py_lists_and_prints_a_modern_recipe():
    done = subprocess.run([sys.executable, "train/train.py", "--recipe", "T01", "--dry-run", "--devices", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert "--network timm/convnext_tiny" in done.stdout and "--backend torch" in done.stdout
    assert "--pretrained timm " in done.stdout
    listed = subprocess.run([sys.executable, "train/train.py", "--recipe", "all", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=True).stdout
    assert "T01" in listed and "PyTorch only" in listed and "not measured" in listed


# --- the Kaggle score ----------------------------------------------------------------

def write_csv(path, rows):
    with open(path, "w", newline="", encoding="ascii") as f:
        csv.writer(f, lineterminator="\n").writerows([["_id", "category_id"], *rows])
    return str(path)


def test_a_submission_is_scored_as_kaggle_scored_cdiscount(tmp_path):
    solution = write_csv(tmp_path / "solution.csv", [(10, 1000), (11, 1001), (12, 1000), (13, 1002)])
    submission = write_csv(tmp_path / "submission.csv", [(11, 1001), (10, 1000), (12, 1002)])   # 13 left out
    result = score.kaggle_score(score.read_rows(submission), score.read_rows(solution))
    assert (result.correct, result.products, result.missing, result.accuracy) == (2, 4, 1, 0.5)
    done = subprocess.run([sys.executable, "predict/score.py", "--submission", submission, "--solution", solution],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.startswith("Kaggle score of %s: 0.50000 (accuracy over the 4 products of solution.csv; "
                                  "1 left out)" % submission)
    foreign = write_csv(tmp_path / "foreign.csv", [(10, 1000), (99, 1000)])
    assert error_lines(["predict/score.py", "--submission", foreign, "--solution", solution])[-1] == \
        "score: error: the submission names 1 products the solution does not hold (first: 99): Kaggle would refuse it"
