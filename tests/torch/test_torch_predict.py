"""The PyTorch model worker in the real predictor: ZeroMQ, forked processes, a real `.rec`,
Gluon runs trained by MXNet (in a child process, predict_side.py) converted on load; the
parity of both frameworks' predictions, a crash of a PyTorch worker, runs of both frameworks
predicted in one command and mixed ensembles.
Each prediction runs in a fresh process (torch_predict_side.py: this pytest process has
run PyTorch, after which forked PyTorch workers would hang)."""
import collections
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
from data.images import decode_bgr
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
    Gluon's format and names (train.torch_backend), the JSON saying ``framework: torch``."""
    copy = os.path.join(str(folder), os.path.basename(run) + "_torch")
    shutil.copytree(run, copy)
    meta_path = os.path.join(copy, "epoch-0001.json")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(dict(meta, framework="torch"), f)
    return copy


@pytest.mark.slow
def test_a_pytorch_run_runs_on_pytorch(world, torch_preds, tmp_path):
    pytorch_run = as_pytorch_run(world["runs"][0], tmp_path)
    [manifest] = predict_side(world, tmp_path / "alone", runs=[pytorch_run], backend=None)["manifests"]
    assert (manifest["model"]["framework"], manifest["model"]["weights_framework"]) == ("torch", "torch")
    np.testing.assert_array_equal(probabilities(str(tmp_path / "alone" / "out" / "dpn_tiny_torch")),
                                  probabilities(os.path.join(torch_preds[0], "dpn_tiny")))


@pytest.mark.slow
def test_a_gluon_run_and_a_pytorch_run_predict_together_on_their_own_frameworks_and_ensemble(world, torch_preds,
                                                                                              tmp_path):
    """No --backend: each model in model workers of its own framework (MXNet and PyTorch in
    separate processes), in one command, with 2 decoders and 2 devices; then the ensemble."""
    pytorch_run = as_pytorch_run(world["runs"][0], tmp_path)
    mixed = predict_side(world, tmp_path / "mixed", runs=[world["runs"][1], pytorch_run], backend=None, decoders=2,
                         devices=["cpu", "cpu:1"])
    frameworks = {m["name"]: (m["model"]["framework"], m["model"]["weights_framework"]) for m in mixed["manifests"]}
    assert frameworks == {"resnext_tiny": ("mxnet", "mxnet"), "dpn_tiny_torch": ("torch", "torch")}
    folders = [str(tmp_path / "mixed" / "out" / "resnext_tiny"), str(tmp_path / "mixed" / "out" / "dpn_tiny_torch")]
    np.testing.assert_array_equal(probabilities(folders[0]),
                                  probabilities(os.path.join(world["mxnet_preds"], "resnext_tiny")))
    np.testing.assert_array_equal(probabilities(folders[1]), probabilities(os.path.join(torch_preds[0], "dpn_tiny")))
    for folder in folders:
        np.testing.assert_array_equal(Predictions(folder).ids, Predictions(folders[0]).ids)
    submission = str(tmp_path / "submission.csv")
    run_python(["predict/ensemble.py", "--preds", *folders, "--categories", world["categories"],
                "--submission", submission, "--no-progress"])
    mean = (probabilities(folders[0]) + probabilities(folders[1])) / 2
    with open(submission, encoding="ascii") as f:
        rows = list(csv.reader(f))
    categories = CategoryMap.from_csv(world["categories"])
    np.testing.assert_array_equal([int(r[1]) for r in rows[1:]], categories.category_ids[mean.argmax(axis=1)])


def test_preprocessing_on_the_device_gives_predict_preprocess_values():
    """device_input (uint8 to the device, arithmetic there) equals network_input (numpy)
    bit for bit, for every channel order, normalisation and a resize."""
    import torch
    from data.images import network_input
    from predict.torch_runner import device_input
    from models.runs import Preprocessing
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
    from models.torch_nets.devices import torch_device
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("gpu") == torch.device("cuda", 0)
    assert torch_device("gpu:3") == torch.device("cuda", 3)
    with pytest.raises(ValueError, match="device must look like"):
        torch_device("cuda:0")


# ----------------------------------------------------------------------------------------
# --decode-on device: the PyTorch model worker decodes the JPEGs (libjpeg-turbo on the CPU)
# ----------------------------------------------------------------------------------------
def assert_same_predictions(expected_folder, actual_folder, tolerance=1e-3):
    """The same rows, the same top-1 class on every product, probabilities within `tolerance`."""
    expected, actual = Predictions(expected_folder), Predictions(actual_folder)
    for field in ("ids", "labels", "n_images"):
        np.testing.assert_array_equal(getattr(actual, field), getattr(expected, field), err_msg=field)
    p, q = probabilities(expected_folder), probabilities(actual_folder)
    np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))
    assert np.abs(p - q).max() <= tolerance
    return expected, actual


@pytest.mark.slow
@pytest.mark.parametrize("views", ["flip", "flip,crops"])
def test_decoding_on_the_device_predicts_what_the_decoders_predict(world, torch_preds, views, tmp_path):
    """``--decode-on device`` through the pipeline (2 decoders checking and forwarding the
    JPEGs, the worker decoding them with libjpeg-turbo and building the views in torch):
    OpenCV's pixels, so the same top-1 on every product and probabilities within 1e-3 of
    the decoders' (flip: torch_preds's run)."""
    if views == world["views"]:
        expected = torch_preds[0]
    else:
        predict_side(world, tmp_path / "decoders", decoders=2, devices=["cpu"], views=views)
        expected = str(tmp_path / "decoders" / "out")
    manifests = predict_side(world, tmp_path / "device", decoders=2, devices=["cpu"], views=views,
                             decode_on="device")["manifests"]
    assert [m["decode_on"] for m in manifests] == ["device", "device"]
    for name in MODELS:
        mxnet, device = assert_same_predictions(os.path.join(expected, name), str(tmp_path / "device" / "out" / name))
        assert device.manifest["images"] == mxnet.manifest["images"] and device.manifest["problems"] == []
        assert device.manifest["tta"] == mxnet.manifest["tta"]


def corrupt_huffman_selector(jpeg):
    """`jpeg` whose scan asks for Huffman tables 2 (DC and AC), which it does not define:
    the structural check (data.jpeg) passes it, libjpeg (OpenCV's and torchvision's)
    refuses it ("Huffman table 0x02 was not defined")."""
    picture = bytearray(jpeg)
    sos = picture.index(b"\xff\xda")
    picture[sos + 6] = 0x22          # the first component's table selectors (DC << 4 | AC)
    return bytes(picture)


def rec_with_damaged_pictures(world, folder, damage):
    """The first products of the world's `.rec`, one picture of a product of several
    pictures and the only picture of another damaged by `damage` (JPEG bytes -> JPEG bytes);
    ``(rec, {product id: its damaged image number})``."""
    from data.recordio import iter_records, unpack
    from helpers import write_pictures_rec
    records = [(label, int(product_id), int(number), jpeg)       # (read without MXNet: not in this process)
               for (_, label, product_id, number), jpeg in (unpack(p) for _, p in iter_records(world["rec"]))]
    images = collections.Counter(r[1] for r in records)
    records = [r for r in records if r[1] in list(images)[:12]]     # the first 12 products
    several = next(p for p in images if images[p] > 1)
    single = next(p for p in images if images[p] == 1)
    bad = {several: 1, single: 0}
    for i, (label, product_id, number, jpeg) in enumerate(records):
        if bad.get(product_id) == number:
            records[i] = (label, product_id, number, damage(jpeg))
    return write_pictures_rec(str(folder / "bad"), *zip(*records)), bad


@pytest.fixture(scope="module")
def bad_rec(world, tmp_path_factory):
    """`rec_with_damaged_pictures` corrupted as `corrupt_huffman_selector` does."""
    from data.jpeg import picture_problem

    def damage(jpeg):
        jpeg = corrupt_huffman_selector(jpeg)
        assert picture_problem(jpeg) is None
        assert decode_bgr(jpeg) is None
        return jpeg

    return rec_with_damaged_pictures(world, tmp_path_factory.mktemp("bad-rec"), damage)


def bad_rec_job(world, bad_rec):
    return dict(rec=bad_rec[0], runs=world["runs"][:1], decoders=2, devices=["cpu"], batch_size=8,
                decode_on="device")


@pytest.mark.slow
def test_a_picture_the_device_cannot_decode_is_skipped_and_reported_as_the_decoders_do(world, bad_rec, tmp_path):
    """A picture that passes the decoders' structural check but does not decode on the device,
    with skip_bad_images: left out (the product of one picture gets the fallback) and
    reported, exactly as the decoders leave out a picture OpenCV cannot decode."""
    bad = bad_rec[1]
    job = dict(bad_rec_job(world, bad_rec), skip_bad_images=True)
    [decoders] = predict_side(world, tmp_path / "decoders", **dict(job, decode_on="decoders"))["manifests"]
    [device] = predict_side(world, tmp_path / "device", **job)["manifests"]
    name = os.path.basename(world["runs"][0])
    assert_same_predictions(str(tmp_path / "decoders" / "out" / name), str(tmp_path / "device" / "out" / name))
    assert len(device["problems"]) == 2 and sorted(device["problems"]) == sorted(decoders["problems"])
    for product_id, image in bad.items():
        assert any(re.search(rf"bad\.rec, product {product_id}: record \d+: image {image} \(\d+ bytes\) is not a "
                             r"decodable JPEG", problem) for problem in device["problems"]), device["problems"]
    assert device["fallback"] == decoders["fallback"] and device["fallback"]["products"] == 1
    assert device["images"] == decoders["images"]


@pytest.mark.slow
def test_a_picture_the_device_cannot_decode_stops_the_run_naming_it(world, bad_rec, tmp_path):
    """The same picture without skip_bad_images: the run stops with the located error (file,
    record, product, image), from the pipeline's model worker and in one process alike."""
    bad = bad_rec[1]
    for decoders in (2, 0):             # the pipeline's model worker; run_in_process
        error = predict_side(world, tmp_path / f"stops-{decoders}",
                             **dict(bad_rec_job(world, bad_rec), decoders=decoders))["error"]
        found = re.search(r"bad\.rec, product (\d+): record \d+: image (\d+) \(\d+ bytes\) is not a decodable JPEG",
                          error)
        assert found and bad[int(found.group(1))] == int(found.group(2)), error
        if decoders:
            assert re.match(r"model worker 0 \(pid \d+\) failed: DataInputError: ", error), error


@pytest.mark.slow
def test_a_damaged_picture_that_opencv_decodes_is_predicted_alike_in_both_places(world, tmp_path):
    """One rule in both decode places: a picture is good where OpenCV decodes it. Pictures
    that pass the structural check and that OpenCV decodes but the device's decoder refuses
    (`helpers.marker_in_scan`) are predicted on the device from OpenCV's pixels: the
    decoders' predictions, nothing skipped, no fallback (the device path used to stop, or
    with skip_bad_images to leave them out)."""
    from helpers import marker_in_scan

    def damage(jpeg):
        jpeg = marker_in_scan(jpeg)
        assert decode_bgr(jpeg) is not None
        return jpeg

    rec, _ = rec_with_damaged_pictures(world, tmp_path, damage)
    job = dict(rec=rec, runs=world["runs"][:1], decoders=2, devices=["cpu"], batch_size=8)
    [decoders] = predict_side(world, tmp_path / "decoders", **dict(job, decode_on="decoders"))["manifests"]
    [device] = predict_side(world, tmp_path / "device", **dict(job, decode_on="device"))["manifests"]
    name = os.path.basename(world["runs"][0])
    assert_same_predictions(str(tmp_path / "decoders" / "out" / name), str(tmp_path / "device" / "out" / name))
    assert device["problems"] == decoders["problems"] == []
    assert device["fallback"]["products"] == decoders["fallback"]["products"] == 0
    assert device["images"] == decoders["images"]


def test_views_built_on_the_device_are_the_decoders_views():
    """device_views (torch) against predict.decode.Views.of (numpy, OpenCV): the same views,
    the resized crops included (predict.torch_decode.resize), in the same order."""
    import torch
    from predict.decode import Views
    from predict.torch_runner import device_views
    rgb = np.random.RandomState(1).randint(0, 256, (180, 180, 3), dtype=np.uint8)
    for text in ("none", "flip", "crops", "flip,crops"):
        views = Views.parse(text, crop_size=150)
        expected = views.of(rgb).astype(np.int16)
        images = torch.from_numpy(np.stack([rgb, rgb[::-1]])).permute(0, 3, 1, 2)
        actual = device_views(views, images).permute(0, 2, 3, 1).numpy().astype(np.int16)
        assert actual.shape == (2 * views.count, 180, 180, 3)
        np.testing.assert_array_equal(actual[:views.count], expected, err_msg=text)
        np.testing.assert_array_equal(actual[views.count:], views.of(rgb[::-1].copy()), err_msg=text)


def test_resize_gives_opencvs_pixels():
    """predict.torch_decode.resize equals cv2.resize INTER_LINEAR bit for bit, up and
    down, on smooth and noisy pictures (its float32 twin `resize` is within one level)."""
    import cv2
    import torch
    from models.torch_nets.images import resize
    rng = np.random.RandomState(2)
    for case in range(40):
        (h, w), size = rng.randint(8, 260, 2), tuple(int(v) for v in rng.randint(8, 260, 2))
        rgb = rng.randint(0, 256, (h, w, 3), dtype=np.uint8)
        if case % 2:
            rgb = cv2.GaussianBlur(rgb, (5, 5), 0)
        expected = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_LINEAR)
        actual = resize(torch.from_numpy(rgb).permute(2, 0, 1), size).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(actual, expected, err_msg=f"{(h, w)} -> {size}")


# ----------------------------------------------------------------------------------------
# A timm network (issue 22): a native PyTorch run beside a Gluon run, in one command
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timm_run(world, tmp_path_factory):
    """``timm/test_convnext`` trained 2 epochs (AdamW, a moving average of its weights, its
    own ImageNet normalisation at 48 x 48) on the world's training side by the PyTorch
    backend: a run folder of ``.safetensors`` weights."""
    from data.categories import CategoryMap as Categories
    from helpers import read_docs, write_pictures_rec
    from train import fit
    from train.args import parse_config
    folder = tmp_path_factory.mktemp("timm-run")
    categories = Categories.from_csv(world["categories"])
    docs = read_docs(os.path.join(os.path.dirname(world["rec"]), "A_train.bson"))
    train = write_pictures_rec(str(folder / "A_train"), *zip(*[
        (categories.class_of(doc["category_id"]), doc["_id"], number, image["picture"])
        for doc in docs for number, image in enumerate(doc["imgs"])]))
    run = str(folder / "timm_test_convnext_A")
    fit.run(parse_config(["--backend", "torch", "--network", "timm/test_convnext", "--data-train", train,
                          "--num-classes", str(len(categories)), "--image-shape", "3,48,48", "--num-epochs", "2",
                          "--batch-size", "16", "--optimizer", "adamw", "--lr", "2e-3", "--ema-decay", "0.9",
                          "--normalization", "imagenet", "--data-nthreads", "1", "--model-dir", run, "--no-progress"]))
    return run


@pytest.mark.slow
def test_a_timm_run_predicts_beside_a_gluon_run_in_one_command_and_they_ensemble(world, timm_run, tmp_path):
    """No --backend: the Gluon run on MXNet, the timm run on PyTorch (its .safetensors
    weights), through ZeroMQ with 2 decoders; then the ensemble and its accuracy table."""
    gluon_run = world["runs"][1]
    mixed = predict_side(world, tmp_path / "mixed", runs=[gluon_run, timm_run], backend=None, decoders=2)
    described = {m["name"]: (m["model"]["framework"], m["model"]["weights_format"], m["model"]["model"])
                 for m in mixed["manifests"]}
    assert described == {"resnext_tiny": ("mxnet", "gluon-params", "resnext_tiny"),
                         "timm_test_convnext_A": ("torch", "safetensors", "timm/test_convnext")}
    folders = [str(tmp_path / "mixed" / "out" / name) for name in ("resnext_tiny", "timm_test_convnext_A")]
    np.testing.assert_array_equal(probabilities(folders[0]),
                                  probabilities(os.path.join(world["mxnet_preds"], "resnext_tiny")))
    gluon, timm_preds = Predictions(folders[0]), Predictions(folders[1])
    np.testing.assert_array_equal(timm_preds.ids, gluon.ids)
    assert timm_preds.manifest["model"]["params"].endswith("epoch-0002.safetensors")
    majority = np.bincount(gluon.labels).max() / len(gluon.labels)
    assert timm_preds.manifest["product_accuracy"]["mean.none"] > majority     # it has learned something
    submission = str(tmp_path / "submission.csv")
    run_python(["predict/ensemble.py", "--preds", *folders, "--categories", world["categories"],
                "--submission", submission, "--table-out", str(tmp_path / "accuracy"), "--no-progress"])
    mean = (probabilities(folders[0]) + probabilities(folders[1])) / 2
    with open(submission, encoding="ascii") as f:
        rows = list(csv.reader(f))
    categories = CategoryMap.from_csv(world["categories"])
    np.testing.assert_array_equal([int(r[1]) for r in rows[1:]], categories.category_ids[mean.argmax(axis=1)])
    table = (tmp_path / "accuracy.md").read_text()
    assert "timm_test_convnext_A" in table and "timm/test_convnext" in table and "| 2 models, mean |" in table


@pytest.mark.slow
def test_the_moving_average_of_a_run_predicts_when_asked(world, timm_run, tmp_path):
    [trained] = predict_side(world, tmp_path / "trained", runs=[timm_run], backend=None)["manifests"]
    [average] = predict_side(world, tmp_path / "average", runs=[timm_run], backend=None, ema=True)["manifests"]
    assert (trained["model"]["ema"], average["model"]["ema"]) == (False, True)
    assert average["model"]["params"].endswith("epoch-0002.ema.safetensors")
    name = os.path.basename(timm_run)
    assert not np.array_equal(probabilities(str(tmp_path / "trained" / "out" / name)),
                              probabilities(str(tmp_path / "average" / "out" / name)))


def test_a_per_channel_scale_on_the_device_gives_predict_preprocess_values():
    import torch
    from data.images import network_input
    from predict.torch_runner import device_input
    from models.runs import Preprocessing
    pixels = np.random.RandomState(1).randint(0, 256, (2, 24, 20, 3), dtype=np.uint8)
    preprocess = Preprocessing((3, 24, 20), "RGB", (123.675, 116.28, 103.53), (1 / 58.395, 1 / 57.12, 1 / 57.375),
                               "imagenet")
    np.testing.assert_array_equal(device_input(preprocess, pixels, torch.device("cpu")).numpy(),
                                  network_input(preprocess, pixels))
