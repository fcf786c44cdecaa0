"""End-to-end training runs of ``train/train.py`` on real RecordIO files of a synthetic task."""
import json
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from data import record_file
from helpers import write_synthetic_dataset
from models import runs
from models.mxnet_nets.runs import load_for_inference
from models.mxnet_nets.weights import structural_names
from models.training_log import read_training_log
from train import fit, logs
from train.args import parse_config
from train.mxnet_backend import backend as backend_mxnet
from train.mxnet_backend import checkpoint, record_iter
from train.mxnet_backend.evaluate import evaluate
from train.train import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 6
# One OpenMP thread: the runs are then bitwise reproducible, and share the cores fairly.
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("rec")), NUM_CLASSES, train_products=300,
                                   val_products=80, seed=21)


def cli_args(data, run_dir, network="dpn_tiny", *extra):
    return ["--network", network, "--data-train", data["train"], "--data-val", data["val"],
            "--num-classes", str(NUM_CLASSES), "--image-shape", "3,32,32", "--batch-size", "32",
            "--lr", "0.003", "--lr-step-epochs", "3", "--disp-batches", "5", "--model-dir", run_dir,
            "--no-progress", *extra]


def train_command(data, run_dir, *extra):
    return [sys.executable, os.path.join(ROOT, "train", "train.py"),
            *cli_args(data, run_dir, "dpn_tiny", "--cpu-devices", "2", *extra)]


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_tiny_network_learns_and_a_killed_run_resumes_exactly(dataset, tmp_path):
    """On two CPU contexts, so that the optimizer state lives in the kvstore.

    The learned parameters of the resumed run equal the uninterrupted run's bit for bit.
    BatchNorm statistics are kept per device and saved as their mean over the devices
    (Gluon's ``save_parameters``), so a resumed run restarts both devices from the mean:
    as the running averages are linear this gives the same statistics in exact
    arithmetic, and equal ones up to float32 rounding here (and so validation metrics).
    """
    full_dir, killed_dir = str(tmp_path / "full"), str(tmp_path / "killed")
    subprocess.run(train_command(dataset, full_dir, "--num-epochs", "4"), env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # It learned: validation accuracy far above chance (1/6), and better than after epoch 1.
    records = read_jsonl(os.path.join(full_dir, "metrics.jsonl"))
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["val"]["accuracy"] > 0.6 > 1 / NUM_CLASSES
    assert records[-1]["val"]["accuracy"] > records[0]["val"]["accuracy"]
    assert records[-1]["val"]["product_accuracy"] > 0.6
    assert records[-1]["lr"] == pytest.approx(0.003 * 0.2)

    # The log says the same in MXNet's format; checkpoints carry what predict/ needs.
    log = read_training_log(os.path.join(full_dir, "train.log"))
    for r in records:
        for name, value in r["val"].items():
            assert log.epochs[r["epoch"] - 1].validation[name] == pytest.approx(value, abs=1e-6)
        assert log.epochs[r["epoch"] - 1].speeds
    with open(os.path.join(full_dir, "train.log")) as f:
        assert f.read().count('Saved checkpoint to "') == 4
    with open(os.path.join(full_dir, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    meta = runs.load_meta(full_dir, 4)
    assert {"model", "classes", "epoch", "args", "metrics", "mean", "scale", "dropout"} <= set(meta)
    assert (meta["model"], meta["classes"], meta["epoch"]) == ("dpn_tiny", NUM_CLASSES, 4)

    # load_for_inference gives back the network that scored the logged validation accuracy.
    loaded = runs.read_meta(full_dir)
    net = load_for_inference(loaded)
    assert loaded["epoch"] == 4
    val = record_file.open_record_file(dataset["val"])
    again = evaluate(net, record_iter.image_iter(val, 32, loaded["image_shape"], loaded["mean"], loaded["scale"]),
                         [mx.cpu()], record_file.read_record_headers(val))
    assert again["accuracy"] == pytest.approx(records[-1]["val"]["accuracy"], abs=1e-9)

    # Kill a second run (SIGKILL) once epoch 1 is saved, resume it, compare with the first.
    proc = subprocess.Popen(train_command(dataset, killed_dir, "--num-epochs", "4"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while runs.latest_epoch(killed_dir) is None and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert runs.latest_epoch(killed_dir) < 4
    subprocess.run(train_command(dataset, killed_dir, "--num-epochs", "4", "--resume"), env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    full = mx.nd.load(os.path.join(full_dir, "epoch-0004.params"))
    resumed = mx.nd.load(os.path.join(killed_dir, "epoch-0004.params"))
    assert full.keys() == resumed.keys()
    for name in full:
        if "running_" in name:
            np.testing.assert_allclose(full[name].asnumpy(), resumed[name].asnumpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(full[name].asnumpy(), resumed[name].asnumpy(), err_msg=name)
    resumed_records = read_jsonl(os.path.join(killed_dir, "metrics.jsonl"))
    assert [r["epoch"] for r in resumed_records] == [1, 2, 3, 4]
    for mine, theirs in zip(resumed_records, records):
        assert mine["train"] == pytest.approx(theirs["train"], rel=1e-5)
        assert mine["val"] == pytest.approx(theirs["val"], abs=0.02)   # a borderline image may flip


def test_start_from_another_network_with_frozen_backbone_on_two_devices(dataset, tmp_path):
    """Like M11 from M10: an SE-ResNeXt starts from a ResNeXt run (shared layers and the
    classifier copied, SE layers fresh), trains its classifier only for an epoch."""
    parent_dir, child_dir = str(tmp_path / "resnext"), str(tmp_path / "se_resnext")
    assert main(cli_args(dataset, parent_dir, "resnext_tiny", "--num-epochs", "1", "--cpu-devices", "2")) == 0
    parent = mx.nd.load(os.path.join(parent_dir, "epoch-0001.params"))

    child_args = cli_args(dataset, child_dir, "se_resnext_tiny", "--num-epochs", "1", "--from-run", parent_dir,
                          "--freeze-epochs", "1")
    args = parse_config(child_args)
    mx.random.seed(args.logging.seed)   # as fit.run does before building the network
    logger = logs.setup_logging(console=False)
    start = fit.start_point(args, logger, checkpoint.check_loadable)
    initial = {name: p.data().asnumpy() for name, p in
               structural_names(backend_mxnet.prepare_network(args, [mx.cpu()], start, logger)).items()}
    shared = [name for name in initial if name in parent]
    assert any(name.startswith("output.") for name in shared)
    assert len(shared) < len(initial)                       # the SE layers are new
    for name in shared:
        np.testing.assert_array_equal(initial[name], parent[name].asnumpy(), err_msg=name)

    assert main(child_args) == 0
    trained = mx.nd.load(os.path.join(child_dir, "epoch-0001.params"))
    for name, value in initial.items():
        if "running_" in name:          # BatchNorm statistics are not parameters of the optimizer
            continue
        changed = not np.array_equal(trained[name].asnumpy(), value)
        assert changed == name.startswith("output."), name


@pytest.mark.parametrize("extra, message", [
    (["--num-classes", "3"], "class count disagrees"),
    (["--gpus", "0"], "--gpus 0"),
    (["--dtype", "float16"], "float16 needs GPUs"),
    (["--freeze-epochs", "1", "--freeze-keep", "^classifier"], "matches no trainable parameter"),
    (["--optimizer", "sgd", "--lr", "1e12", "--label-smoothing", "0", "--disp-batches", "1"], "diverged"),
])
def test_clear_errors(dataset, tmp_path, capsys, extra, message):
    if "--gpus" in extra and mx.context.num_gpus() > 0:
        pytest.skip("this machine has a GPU")
    assert_user_error(capsys, cli_args(dataset, str(tmp_path / "run"), "resnext_tiny", "--num-epochs", "1", *extra),
                      message)


def assert_user_error(capsys, argv, message):
    """`main(argv)` ends with exit status 2 and one line `train: error: ...` holding `message`."""
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.rstrip("\n").splitlines()[-1]
    assert line.startswith("train: error: ") and message in line, err


def test_clear_errors_for_data_files(dataset, tmp_path, capsys):
    missing = cli_args(dataset, str(tmp_path / "run"), "resnext_tiny")
    missing[missing.index("--data-train") + 1] = str(tmp_path / "nowhere.rec")
    assert_user_error(capsys, missing, "does not exist")
    swapped = cli_args(dataset, str(tmp_path / "run"), "resnext_tiny")
    os.link(dataset["val"], str(tmp_path / "val.rec"))
    os.link(dataset["train"][:-4] + ".idx", str(tmp_path / "val.idx"))   # the wrong index
    swapped[swapped.index("--data-val") + 1] = str(tmp_path / "val.rec")
    assert_user_error(capsys, swapped, "val.idx")


def test_a_run_from_a_model_zoo_file_of_other_widths_resumes_and_predicts(dataset, tmp_path):
    """The widths read from a model-zoo ResNeXt file are recorded with the run, so that
    resume and prediction build the same network again (without the file)."""
    from published_symbols import mxnet_resnext, random_checkpoint
    prefix = str(tmp_path / "zoo")
    random_checkpoint(mxnet_resnext((1, 1, 1, 1), (16, 64, 128, 256, 512), 4, 0.5, 4), prefix)
    run_dir = str(tmp_path / "run")
    argv = cli_args(dataset, run_dir, "resnext_tiny_mxnet", "--pretrained", prefix + "-0000.params")
    assert main(argv + ["--num-epochs", "1"]) == 0
    assert main(argv + ["--num-epochs", "2", "--resume"]) == 0
    meta = runs.read_meta(run_dir)
    net = load_for_inference(meta)
    assert meta["epoch"] == 2 and meta["config_overrides"] == {"bottleneck_width": 32}
    assert net.config_overrides == {"bottleneck_width": 32}
