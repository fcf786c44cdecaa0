"""predict and ensemble on bad input that takes a trained model or prediction folders, at
the command line: each case exits non-zero with one `PROG: error: MESSAGE` line naming the
file and no traceback. A case is (tool, arguments, what the error line must hold), with
``{name}`` standing for the paths of `bad_inputs`. (The cases that need neither are rows
of tests/test_cli_bad_input.py.)"""
import os
import subprocess
import sys

import numpy as np
import pytest

from predict.outputs import PredictionWriter
from predict_world import synthetic_world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENSEMBLE = ["--categories", "{categories}", "--no-progress"]
CASES = {
    "--class-prior that is not there": (
        "predict", ["--input", "{test_bson}", "--models", "{run}", "--class-prior", "{tmp}/A_train.report.json",
                    "--out", "{tmp}/preds", "--no-progress"],
        "{tmp}/A_train.report.json: no such conversion report"),
    "--decode-on device with MXNet model workers": (
        "predict", ["--input", "{test_bson}", "--models", "{run}", "--decode-on", "device", "--out", "{tmp}/preds",
                    "--no-progress"],
        "--decode-on device needs PyTorch model workers, and these models run on MXNet: add --backend torch"),
    "prediction folders of different inputs": (
        "ensemble", ["--preds", "{preds_a}", "{preds_b}", *ENSEMBLE],
        "{preds_b} and {preds_a} do not hold the same products"),
    "missing category file": (
        "ensemble", ["--preds", "{preds_a}", "--categories", "{tmp}/missing.csv"],
        "{tmp}/missing.csv"),
    "test predictions without --submission": (
        "ensemble", ["--preds", "{preds_a}", *ENSEMBLE],
        "{preds_a} has no labels (predictions of a test file): without --submission FILE there is nothing to write"),
    "submission path taken by a folder": (
        "ensemble", ["--preds", "{preds_a}", *ENSEMBLE, "--submission", "{tmp}/taken.csv"],
        "{tmp}/taken.csv: cannot write the submission"),
}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    world = synthetic_world(str(tmp_path_factory.getbasetemp() / "predict-world"))
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "taken.csv").mkdir()
    for name, ids in (("a", [1, 2]), ("b", [1, 3])):      # two small prediction folders of different products
        writer = PredictionWriter(str(tmp / name / "m"), 6, ["mean.none"])
        for row, product_id in enumerate(ids):
            writer.write(row, product_id, -1, 1, bytes(16), {"mean.none": np.full(6, 1 / 6)})
        writer.close(len(ids), {"name": f"m{name}"})
    return dict(tmp=tmp, test_bson=world.test_bson, categories=world.categories, run=world.runs[0],
                preds_a=tmp / "a" / "m", preds_b=tmp / "b" / "m")


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_naming_the_file(case, bad_inputs):
    tool, args, expected = CASES[case]
    result = subprocess.run([sys.executable, "-m", f"predict.{tool}", *(a.format(**bad_inputs) for a in args)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), result.stderr
    assert expected.format(**bad_inputs) in lines[0]
