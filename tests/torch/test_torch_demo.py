"""The README's main job with both backends (``BACKEND=both``): dpn_tiny trained with MXNet,
resnext_tiny with PyTorch, both predicted by PyTorch model workers, ensembled together; and
with PyTorch alone (``BACKEND=torch``), where a network of timm joins the ensemble."""
import collections
import csv
import gzip
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from models.backends import get_backend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.skipif(not get_backend("mxnet").installed(), reason="BACKEND=both trains a network with MXNet, which is "
                    "not installed here (the GPU machines)")
def test_demo_mixes_a_gluon_trained_and_a_pytorch_trained_model(tmp_path):
    work = tmp_path / "work"
    env = dict(os.environ, WORK=str(work), PYTHON=sys.executable, BACKEND="both", TRAIN_PRODUCTS="1200",
               TEST_PRODUCTS="150", CATEGORIES_N="8", EPOCHS="3", DECODERS="1")
    done = subprocess.run(["sh", "shell/run_demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stderr[-5000:]

    frameworks = {run: json.loads((work / "runs" / run / "epoch-0003.json").read_text())["framework"]
                  for run in ("dpn_tiny_A", "resnext_tiny_A")}
    assert frameworks == {"dpn_tiny_A": "mxnet", "resnext_tiny_A": "torch"}
    labels = np.load(work / "preds" / "A_val" / "dpn_tiny_A" / "labels.npy")
    majority = np.bincount(labels).max() / len(labels)
    for run, trained_by in frameworks.items():
        manifest = json.loads((work / "preds" / "A_val" / run / "manifest.json").read_text())
        assert (manifest["model"]["framework"], manifest["model"]["weights_framework"]) == ("torch", trained_by)
        assert manifest["product_accuracy"]["mean.none"] > majority + 0.2, (run, manifest["product_accuracy"])

    with gzip.open(work / "submission.csv.gz", "rt") as f:
        rows = list(csv.reader(f))
    with open(work / "synth" / "test_solution.csv", encoding="utf-8") as f:
        test_ids = sorted(int(row[0]) for row in list(csv.reader(f))[1:])
    assert sorted(int(row[0]) for row in rows[1:]) == test_ids
    assert "| 2 models, mean | mean.none |" in (work / "report" / "accuracy.md").read_text()


@pytest.mark.slow
def test_the_pytorch_demo_adds_a_timm_network_and_scores_its_submission(tmp_path):
    """``BACKEND=torch``: timm's resnet10t (at 64 x 64) trained and ensembled beside the tiny
    network, and the submission scored against test_solution.csv as Kaggle scored it."""
    work = tmp_path / "work"
    env = dict(os.environ, WORK=str(work), PYTHON=sys.executable, BACKEND="torch", NETWORKS="resnext_tiny",
               TRAIN_PRODUCTS="800", TEST_PRODUCTS="120", CATEGORIES_N="6", EPOCHS="3", DECODERS="1")
    done = subprocess.run(["sh", "shell/run_demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stderr[-5000:]
    meta = json.loads((work / "runs" / "timm_resnet10t_A" / "epoch-0003.json").read_text())
    assert (meta["model"], meta["framework"], meta["weights_format"], meta["image_shape"]) == \
        ("timm/resnet10t", "torch", "safetensors", [3, 64, 64])
    assert sorted(os.listdir(work / "preds" / "test")) == ["resnext_tiny_A", "timm_resnet10t_A"]
    assert "| 2 models, mean | mean.none |" in (work / "report" / "accuracy.md").read_text()

    with gzip.open(work / "submission.csv.gz", "rt") as f:
        submitted = {int(row[0]): int(row[1]) for row in list(csv.reader(f))[1:]}
    with open(work / "synth" / "test_solution.csv", encoding="utf-8") as f:
        solution = {int(row[0]): int(row[1]) for row in list(csv.reader(f))[1:]}
    score = np.mean([submitted[product] == category for product, category in solution.items()])
    majority = max(collections.Counter(solution.values()).values()) / len(solution)
    assert score > majority
    assert "Kaggle score of %s: %.5f (accuracy over the 120 products of test_solution.csv; 0 left out)" % (
        work / "submission.csv.gz", score) in done.stdout
    assert re.search(r"validation product accuracy of the same ensemble: 0\.\d{5} \(\d+ products\)", done.stdout)
