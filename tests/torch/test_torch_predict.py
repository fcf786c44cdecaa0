"""The PyTorch model worker in the real predictor: ZeroMQ, forked processes, a real `.rec`,
Gluon runs trained by MXNet (in a child process, predict_side.py) converted on load; the
parity of both frameworks' predictions, a crash of a PyTorch worker, a mixed ensemble.
Each prediction runs in a fresh process (torch_predict_side.py: this pytest process has
run PyTorch, after which forked PyTorch workers would hang)."""
import csv
import gzip
import importlib.util
import json
import os
import re
import shutil

import numpy as np
import pytest

from data.categories import CategoryMap
from predict.outputs import Predictions
from twin_helpers import run_python

PREDICT_SIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "predict_side.py")
TORCH_PREDICT_SIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_predict_side.py")
MODELS = ("dpn_tiny", "resnext_tiny")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """predict_side.py's world: runs, `.rec`, the MXNet predictor's folders (one MXNet child)."""
    if importlib.util.find_spec("mxnet") is None:
        pytest.skip("MXNet is not installed: the Gluon runs cannot be trained")
    folder = str(tmp_path_factory.mktemp("torch-predict-world"))
    run_python([PREDICT_SIDE, folder])
    with open(os.path.join(folder, "world.json"), encoding="utf-8") as f:
        return json.load(f)


def predict_side(world, folder, op="predict", **job):
    """Run `op` of torch_predict_side.py on `world`'s `.rec` (writing into `folder`); its result."""
    job = dict(dict(op=op, rec=world["rec"], categories=world["categories"], runs=world["runs"], backend="torch",
                    out=os.path.join(str(folder), "out"), decoders=1, devices=["cpu"],
                    batch_size=world["batch_size"], views=world["views"],
                    result=os.path.join(str(folder), "result.json")), **job)
    os.makedirs(str(folder), exist_ok=True)
    path = os.path.join(str(folder), "job.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(job, f)
    run_python([TORCH_PREDICT_SIDE, path])
    with open(job["result"], encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def torch_preds(world, tmp_path_factory):
    """The same `.rec` predicted by PyTorch model workers (the Gluon runs converted on load):
    two workers, two decoders, ZeroMQ."""
    folder = tmp_path_factory.mktemp("torch-preds")
    result = predict_side(world, folder, decoders=2, devices=["cpu", "cpu:1"])
    return os.path.join(str(folder), "out"), result["manifests"]


def probabilities(folder):
    return np.asarray(Predictions(folder).probs("mean.none"), np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_a_gluon_run_and_its_converted_pytorch_twin_predict_the_same_rec_alike(world, torch_preds, name):
    mxnet_folder, torch_folder = os.path.join(world["mxnet_preds"], name), os.path.join(torch_preds[0], name)
    mxnet, torch = Predictions(mxnet_folder), Predictions(torch_folder)
    for field in ("ids", "labels", "n_images"):
        np.testing.assert_array_equal(getattr(torch, field), getattr(mxnet, field), err_msg=field)
    assert len(mxnet) == 60 and mxnet.manifest["images"] == torch.manifest["images"] > len(mxnet)
    expected, actual = probabilities(mxnet_folder), probabilities(torch_folder)
    assert np.abs(expected - actual).max() <= 1e-3
    assert np.mean(expected.argmax(axis=1) == actual.argmax(axis=1)) >= 0.999
    # not a trivial agreement: the networks are confident and differ from each other
    assert expected.max(axis=1).mean() > 0.4
    assert mxnet.manifest["model"]["framework"] == "mxnet"
    assert torch.manifest["model"]["framework"] == "torch"
    assert torch.manifest["model"]["weights_framework"] == "mxnet"
    assert torch.manifest["model"]["params"].endswith("epoch-0001.params")


@pytest.mark.slow
def test_sigkill_of_a_pytorch_model_worker_ends_the_run_naming_it(world, tmp_path):
    """torch_predict_side.py's ``kill``: tests/pipeline_kills.py's checks, in that process."""
    assert predict_side(world, tmp_path, op="kill", decoders=2, batch_size=4) == {"checked": True}


@pytest.mark.slow
def test_an_ensemble_mixes_prediction_folders_of_both_frameworks(world, torch_preds, tmp_path):
    folders = [os.path.join(world["mxnet_preds"], "dpn_tiny"), os.path.join(torch_preds[0], "resnext_tiny")]
    submission = str(tmp_path / "submission.csv.gz")
    run_python(["predict/ensemble.py", "--preds", *folders, "--categories", world["categories"],
                "--submission", submission, "--table-out", str(tmp_path / "accuracy"), "--no-progress"])
    frameworks = [Predictions(f).manifest["model"]["framework"] for f in folders]
    assert frameworks == ["mxnet", "torch"]
    categories = CategoryMap.from_csv(world["categories"])
    mean = (probabilities(folders[0]) + probabilities(folders[1])) / 2
    with gzip.open(submission, "rt", encoding="ascii") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["_id", "category_id"]
    np.testing.assert_array_equal([int(r[0]) for r in rows[1:]], Predictions(folders[0]).ids)
    np.testing.assert_array_equal([int(r[1]) for r in rows[1:]], categories.category_ids[mean.argmax(axis=1)])
    table = (tmp_path / "accuracy.md").read_text()
    assert "dpn_tiny" in table and "resnext_tiny" in table and "ensemble" in table


def as_pytorch_run(run, folder):
    """A copy of Gluon run `run` as the PyTorch backend saves a run: the same weights in
    Gluon's format and names (train.backend_torch), the JSON saying ``framework: torch``."""
    copy = os.path.join(str(folder), os.path.basename(run) + "_torch")
    shutil.copytree(run, copy)
    meta_path = os.path.join(copy, "epoch-0001.json")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(dict(meta, framework="torch"), f)
    return copy


@pytest.mark.slow
def test_a_pytorch_run_runs_on_pytorch_and_with_a_gluon_run_needs_backend_torch(world, torch_preds, tmp_path):
    pytorch_run = as_pytorch_run(world["runs"][0], tmp_path)
    [manifest] = predict_side(world, tmp_path / "alone", runs=[pytorch_run], backend=None)["manifests"]
    assert (manifest["model"]["framework"], manifest["model"]["weights_framework"]) == ("torch", "torch")
    np.testing.assert_array_equal(probabilities(str(tmp_path / "alone" / "out" / "dpn_tiny_torch")),
                                  probabilities(os.path.join(torch_preds[0], "dpn_tiny")))
    refused = predict_side(world, tmp_path / "mixed", runs=[world["runs"][1], pytorch_run], backend=None)
    assert re.search(r"model worker 0 \(pid \d+\) failed: ValueError: the models need both frameworks: "
                     r"resnext_tiny \(mxnet\), dpn_tiny_torch \(torch\).*--backend torch", refused["error"])
    assert not os.path.exists(tmp_path / "mixed" / "out" / "resnext_tiny")


def test_preprocessing_on_the_device_gives_predict_preprocess_values():
    """device_input (uint8 to the device, arithmetic there) equals network_input (numpy)
    bit for bit, for every channel order, normalisation and a resize."""
    import torch
    from predict.preprocess import network_input
    from predict.torch_models import device_input
    from train.run_folder import Preprocessing
    pixels = np.random.RandomState(0).randint(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    for preprocess in (Preprocessing((3, 40, 48), "RGB", (0.0, 0.0, 0.0), 1.0, "raw"),
                       Preprocessing((3, 32, 30), "BGR", (123.7, 116.3, 103.5), 0.0171, "imagenet"),
                       Preprocessing((3, 40, 48), "RGB", (0.0, 0.0, 0.0), 1 / 255, "unit")):
        expected = network_input(preprocess, pixels)
        actual = device_input(preprocess, pixels, torch.device("cpu")).numpy()
        assert actual.dtype == np.float32
        np.testing.assert_array_equal(actual, expected)


def test_device_strings_name_torch_devices():
    import torch
    from predict.torch_models import torch_device
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("gpu") == torch.device("cuda", 0)
    assert torch_device("gpu:3") == torch.device("cuda", 3)
    with pytest.raises(ValueError, match="device must look like"):
        torch_device("cuda:0")
