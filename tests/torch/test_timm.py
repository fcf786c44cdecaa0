"""timm's networks on the PyTorch backend (issue 22): a network of none of the reference's
families (``timm/test_efficientnet``, normalised per channel as its ImageNet weights were)
trains from the command line into a native run folder (``.safetensors``), resumes
bit-exactly with AdamW, a cosine schedule and a moving average of its weights (timm's
``ModelEmaV3``), validates that average when asked, and starts from ImageNet weights as timm
users get them: a file, or timm's own loader reading the Hugging Face cache offline (the
cache built here with random weights). Prediction and ensembles: test_torch_predict.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from models import runs
from models.__main__ import model_table
from torch_recs import write_dataset
from train import fit
from train.args import parse_config
from train.logs import setup_logging
from train.torch_backend.backend import TorchBackend

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NETWORK = "timm/test_efficientnet"
PRETRAINED_NETWORK = "timm/test_convnext"          # LayerNorms only: a frozen backbone stays as loaded
HUB_REPOSITORY = "models--timm--test_convnext.r160_in1k"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("timm_data")))


def options(dataset, run_dir, *extra):
    train, val = dataset
    return ["--backend", "torch", "--data-train", train, "--data-val", val, "--num-classes", "4",
            "--image-shape", "3,32,32", "--network", NETWORK, "--batch-size", "16", "--lr", "2e-3",
            "--data-nthreads", "1", "--disp-batches", "4", "--model-dir", str(run_dir), "--no-progress", *extra]


def train_here(dataset, run_dir, *extra):
    return fit.run(parse_config(options(dataset, run_dir, *extra)))


def train_command(dataset, run_dir, *extra, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "train", "train.py"), *options(dataset, run_dir, *extra)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def state(path):
    return load_file(str(path))


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
def test_a_timm_network_trains_into_a_native_run_folder(dataset, tmp_path):
    run_dir = tmp_path / "run"
    done = train_command(dataset, run_dir, "--num-epochs", "2", "--normalization", "imagenet", "--optimizer", "adamw",
                         "--lr-schedule", "cosine", "--ema-decay", "0.9", "--random-crop", "1",
                         "--max-random-scale", "1.2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in run_dir.glob("epoch-0002.*")) == [
        "epoch-0002.ema.safetensors", "epoch-0002.json", "epoch-0002.safetensors", "epoch-0002.states"]
    assert not list(run_dir.glob("*.params"))
    assert 'Saved checkpoint to "%s"' % (run_dir / "epoch-0002.safetensors") in (run_dir / "train.log").read_text()
    meta = runs.read_meta(str(run_dir))
    assert (meta["framework"], meta["weights_format"], meta["model"], meta["epoch"]) == \
        ("torch", "safetensors", NETWORK, 2)
    assert meta["config_overrides"] == {"img_size": [32, 32]}
    assert meta["ema_params"] == str(run_dir / "epoch-0002.ema.safetensors")
    # timm's ImageNet normalisation of the network: its mean and one std per channel
    cfg = timm.models.get_pretrained_cfg("test_efficientnet")
    np.testing.assert_allclose(meta["mean"], np.multiply(cfg.mean, 255))
    np.testing.assert_allclose(meta["scale"], 1 / (255 * np.asarray(cfg.std)))
    # the weights are timm's own state dict: timm users load them as they are
    model = timm.create_model("test_efficientnet", num_classes=4)
    model.load_state_dict(state(meta["params"]))
    assert meta["metrics"]["val"]["accuracy"] > 0.5 and meta["metrics"]["val"]["product_accuracy"] > 0.5   # chance: 1/4


@pytest.mark.slow
def test_a_timm_run_resumes_bit_exactly_with_adamw_a_cosine_schedule_and_the_moving_average(dataset, tmp_path):
    extra = ("--optimizer", "adamw", "--wd", "0.05", "--lr-schedule", "cosine", "--cosine-epochs", "2",
             "--warmup-epochs", "0.5", "--ema-decay", "0.8", "--ema-warmup", "--random-crop", "1",
             "--max-random-scale", "1.25", "--max-random-h", "10", "--dropout", "0.2")
    train_here(dataset, tmp_path / "straight", "--num-epochs", "2", *extra)
    train_here(dataset, tmp_path / "resumed", "--num-epochs", "1", *extra)
    records = train_here(dataset, tmp_path / "resumed", "--num-epochs", "2", "--resume", *extra)
    assert [r["epoch"] for r in records] == [2]
    assert "continuing the moving average of the weights" in (tmp_path / "resumed" / "train.log").read_text()
    for name in ("epoch-0002.safetensors", "epoch-0002.ema.safetensors"):
        assert_same_state(state(tmp_path / "straight" / name), state(tmp_path / "resumed" / name))
    straight, resumed = (json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[1])
                         for run in ("straight", "resumed"))
    assert straight["train"] == resumed["train"] and straight["val"] == resumed["val"]
    assert straight["lr"] == resumed["lr"] < 2e-3


def test_the_moving_average_is_validated_when_asked(dataset, tmp_path):
    """--ema-eval changes what is validated, not what is trained; what it reports is the
    validation of the saved average."""
    train_here(dataset, tmp_path / "trained", "--num-epochs", "1", "--ema-decay", "0.9")
    train_here(dataset, tmp_path / "average", "--num-epochs", "1", "--ema-decay", "0.9", "--ema-eval")
    for name in ("epoch-0001.safetensors", "epoch-0001.ema.safetensors"):
        assert_same_state(state(tmp_path / "trained" / name), state(tmp_path / "average" / name))
    trained, average = (runs.load_meta(str(tmp_path / run), 1)["metrics"]["val"] for run in ("trained", "average"))
    assert trained != average
    # the average's file, loaded as a network's weights and validated: what --ema-eval reported
    config = parse_config(options(dataset, tmp_path / "check", "--num-epochs", "1"))
    logger = setup_logging(None)
    backend = TorchBackend(config)
    data = fit.prepare_data(config, True, 1, logger)
    backend.build(fit.StartPoint(params=str(tmp_path / "average" / "epoch-0001.ema.safetensors"),
                                 weights_format=runs.SAFETENSORS), data, logger)
    assert backend.evaluate(data) == average


def timm_state(name, seed):
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}


def assert_backbone_loaded(run_dir, imagenet):
    """The run's backbone is the ImageNet file's (trained with the backbone frozen), its
    classifier a fresh 4-way one."""
    trained = state(run_dir / "epoch-0001.safetensors")
    head = ("head.fc.weight", "head.fc.bias")
    assert trained[head[0]].shape == (4, imagenet[head[0]].shape[1])
    assert_same_state({k: v for k, v in trained.items() if k not in head},
                      {k: v for k, v in imagenet.items() if k not in head})


PRETRAINED_OPTIONS = ("--network", PRETRAINED_NETWORK, "--num-epochs", "1", "--epoch-size", "32", "--freeze-epochs",
                      "1")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_imagenet_weights_of_a_timm_file_start_a_timm_network(dataset, tmp_path, suffix):
    imagenet = timm_state("test_convnext", seed=7)
    path = str(tmp_path / ("test_convnext" + suffix))
    save_file(imagenet, path) if suffix == ".safetensors" else torch.save(imagenet, path)
    train_here(dataset, tmp_path / "run", *PRETRAINED_OPTIONS, "--pretrained", path)
    assert_backbone_loaded(tmp_path / "run", imagenet)


def hub_cache(home, imagenet):
    """A Hugging Face cache (``HF_HOME``) holding `imagenet` as test_convnext's default weights,
    in the hub's layout: refs/main names the revision whose snapshot holds model.safetensors."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    folder = home / "hub" / HUB_REPOSITORY
    (folder / "snapshots" / revision).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    save_file(imagenet, str(folder / "snapshots" / revision / "model.safetensors"))
    return folder


def offline(home):
    return dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


def test_pretrained_timm_loads_the_default_weights_through_timms_loader_from_the_cache_offline(dataset, tmp_path):
    imagenet = timm_state("test_convnext", seed=11)
    hub_cache(tmp_path / "hf", imagenet)
    done = train_command(dataset, tmp_path / "run", *PRETRAINED_OPTIONS, "--pretrained", "timm",
                         env=offline(tmp_path / "hf"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "initialised from timm/test_convnext's ImageNet weights through timm's loader" in done.stderr
    assert_backbone_loaded(tmp_path / "run", imagenet)


def test_pretrained_timm_without_the_file_says_in_one_line_which_file_to_put_where(dataset, tmp_path):
    done = train_command(dataset, tmp_path / "run", *PRETRAINED_OPTIONS, "--pretrained", "timm",
                         env=offline(tmp_path / "empty"))
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [line for line in lines if "error" in line] == lines[-1:]
    folder = tmp_path / "empty" / "hub" / HUB_REPOSITORY
    assert lines[-1] == (
        "train: error: --pretrained timm: timm/test_convnext's ImageNet weights (Hugging Face "
        "timm/test_convnext.r160_in1k, model.safetensors) are neither in the cache nor to be downloaded here: put "
        "the file in %s/snapshots/REVISION/ and REVISION in %s/refs/main, or give it with --pretrained FILE"
        % (folder, folder))


def test_the_listing_shows_the_family_and_counts_a_named_network():
    rows = model_table(backend="torch").splitlines()
    assert rows[-1].startswith("| timm/<name> | timm | any network of timm.list_models() as timm/<name>")
    [row] = model_table(["timm/test_convnext"], "torch").splitlines()[2:]
    count = sum(p.numel() for p in timm.create_model("test_convnext").parameters()) / 1e6
    assert row.startswith("| timm/test_convnext | timm | %.2f |  | 64 | raw 0-255 | mean (127.5, 127.5, 127.5) x "
                          "0.007843 |" % count)


def test_training_normalises_each_channel_as_the_predictor_does():
    from data.images import network_input
    from models.torch_nets.images import normalise
    pixels = np.random.RandomState(2).randint(0, 256, (2, 16, 12, 3), dtype=np.uint8)
    preprocess = runs.Preprocessing((3, 16, 12), "RGB", (123.675, 116.28, 103.53),
                                    (1 / 58.395, 1 / 57.12, 1 / 57.375), "imagenet")
    x = normalise(torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))), preprocess.mean,
                  preprocess.scale, torch.device("cpu"))
    np.testing.assert_array_equal(x.numpy(), network_input(preprocess, pixels))
