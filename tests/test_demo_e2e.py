"""The README's main job end to end (shell/run_demo.sh) on a smaller synthetic dataset."""
import csv
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(work, **settings):
    env = dict(os.environ, WORK=str(work), PYTHON=sys.executable, **{k: str(v) for k, v in settings.items()})
    return subprocess.run(["sh", "shell/run_demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_outputs(tmp_path):
    work = tmp_path / "work"
    settings = dict(TRAIN_PRODUCTS=1500, TEST_PRODUCTS=200, CATEGORIES_N=8, EPOCHS=3, DECODERS=1)
    first = run_demo(work, **settings)
    assert first.returncode == 0, first.stderr[-5000:]

    # Every test product exactly once, with a category id of the CSV.
    with open(work / "synth" / "category_names.csv", encoding="utf-8") as f:
        categories = {int(row["category_id"]) for row in csv.DictReader(f)}
    with gzip.open(work / "submission.csv.gz", "rt") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["_id", "category_id"]
    with open(work / "synth" / "test_solution.csv", encoding="utf-8") as f:
        test_ids = [int(row[0]) for row in list(csv.reader(f))[1:]]
    submitted = [int(r[0]) for r in rows[1:]]
    assert sorted(submitted) == sorted(test_ids) and len(set(submitted)) == len(submitted)
    assert {int(r[1]) for r in rows[1:]} <= categories

    # Each tiny network is well above the majority-class baseline on A's validation side.
    runs = sorted(os.listdir(work / "preds" / "A_val"))
    assert runs == ["dpn_tiny_A", "resnext_tiny_A"]
    labels = np.load(work / "preds" / "A_val" / runs[0] / "labels.npy")
    majority = np.bincount(labels).max() / len(labels)
    for run in runs:
        manifest = json.loads((work / "preds" / "A_val" / run / "manifest.json").read_text())
        assert manifest["product_accuracy"]["mean.none"] > majority + 0.2, (run, manifest["product_accuracy"], majority)
    table = (work / "report" / "accuracy.md").read_text()
    assert "dpn_tiny_A" in table and "M14" in table and "0.743781" in table
    assert (work / "report" / "accuracy.png").stat().st_size > 10_000
    for run in runs:
        assert (work / "runs" / run / "curves.png").exists()
    assert "submission" in first.stdout and "accuracy table" in first.stdout
    # The submission scored as Kaggle scored Cdiscount, beside the validation accuracy.
    assert "Kaggle score of %s: " % (work / "submission.csv.gz") in first.stdout
    assert "accuracy over the 200 products of test_solution.csv; 0 left out" in first.stdout
    assert "validation product accuracy of the same ensemble: " in first.stdout

    # A re-run reuses what is built: same submission, no retraining.
    before = (work / "submission.csv.gz").read_bytes()
    second = run_demo(work, **settings)
    assert second.returncode == 0, second.stderr[-5000:]
    assert "reusing predictions" in second.stderr and "reusing" in second.stderr
    assert "Epoch[0] Batch" not in second.stderr
    assert gzip.decompress((work / "submission.csv.gz").read_bytes()) == gzip.decompress(before)
