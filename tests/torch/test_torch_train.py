"""The PyTorch training backend (``train.torch_backend``) on the CPU: it learns, resumes
bit-exactly, accumulates as a larger batch does, 2 gloo processes train, log and validate
as 1 process with the same global batch, and frozen batch norms keep their statistics as
MXNet's do; ``train/train.py --backend torch`` writes the run folder."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data.products import product_ranges
from data.record_file import open_record_file, read_record_headers
from models import params_file
from torch_recs import write_dataset
from train import fit
from train.args import parse_config
from models.torch_nets.weights import gluon_weights_to_state
from models import runs
from twin_helpers import assert_same_outputs, images, require_mxnet, run_gluon_side, run_python

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("torch_data")))


@pytest.fixture(scope="module")
def one_epoch_run(dataset, tmp_path_factory):
    """A run folder holding one epoch of ``resnext_tiny`` trained by the PyTorch backend."""
    run_dir = tmp_path_factory.mktemp("torch_runs") / "one_epoch"
    train_here(dataset, run_dir, "--num-epochs", "1")
    return run_dir


@pytest.fixture(scope="module")
def dpn_run(dataset, tmp_path_factory):
    """A run folder holding one epoch of ``dpn_tiny`` trained by the PyTorch backend."""
    run_dir = tmp_path_factory.mktemp("torch_runs") / "dpn"
    train_here(dataset, run_dir, "--num-epochs", "1", "--network", "dpn_tiny")
    return run_dir


def options(dataset, run_dir, *extra):
    train, val = dataset
    return ["--backend", "torch", "--data-train", train, "--data-val", val, "--num-classes", "4",
            "--image-shape", "3,32,32", "--network", "resnext_tiny", "--batch-size", "16", "--lr", "1e-3",
            "--data-nthreads", "1", "--disp-batches", "5", "--model-dir", str(run_dir), "--no-progress", *extra]


def train_here(dataset, run_dir, *extra):
    """Train in this process (PyTorch only); returns the records of the epochs trained."""
    return fit.run(parse_config(options(dataset, run_dir, *extra)))


def train_with_mxnet(dataset, run_dir, *extra):
    """Train the same way with the MXNet backend, in a child process."""
    require_mxnet()
    run_python([os.path.join(REPO, "train", "train.py"), *options(dataset, run_dir, *extra), "--backend", "mxnet"])


def torchrun_two_processes(dataset, run_dir, *extra):
    """Train with 2 gloo processes under torchrun (batch 16 each)."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           os.path.join(REPO, "train", "train.py"), *options(dataset, run_dir, *extra)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(run_dir, epoch):
    return params_file.load(runs.params_path(str(run_dir), epoch))


def metric_records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def batch_lines(run_dir):
    """The metric values of every ``Epoch[e] Batch [n]`` line of a run's log (not the speed)."""
    log = (run_dir / "train.log").read_text()
    lines = re.findall(r"Epoch\[\d+\] Batch \[\d+\]\tSpeed: [\d.]+ samples/sec\t(.*)", log)
    return [float(value) for line in lines for value in re.findall(r"=([\d.]+)", line)]


def assert_same_weights(a, b, rtol=0.0, atol=0.0):
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


def test_command_line_trains_and_writes_the_run_folder(dataset, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, os.path.join(REPO, "train", "train.py"),
                           *options(dataset, run_dir, "--num-epochs", "2", "--random-crop", "1",
                                    "--max-random-scale", "1.2", "--max-random-l", "20", "--dropout", "0.1")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    for pattern in (r"Epoch\[0\] Batch \[5\]\tSpeed: [\d.]+ samples/sec\taccuracy=[\d.]+\ttop_k_accuracy_5=",
                    r"Epoch\[1\] Train-accuracy=", r"Epoch\[1\] Time cost=", r"Epoch\[1\] Validation-product_accuracy=",
                    r'Saved checkpoint to ".*epoch-0002\.params"'):
        assert re.search(pattern, log), pattern
    meta = runs.read_meta(str(run_dir))
    assert (meta["framework"], meta["model"], meta["epoch"], meta["args"]["backend"]) == \
        ("torch", "resnext_tiny", 2, "torch")
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert (run_dir / "curves.png").stat().st_size > 0
    # Chance is 1/4: the tiny network has learned the classes.
    assert meta["metrics"]["val"]["accuracy"] > 0.6 and meta["metrics"]["val"]["product_accuracy"] > 0.6


def test_resume_is_bit_exact(dataset, tmp_path):
    extra = ("--random-crop", "1", "--max-random-scale", "1.25", "--max-random-h", "10", "--dropout", "0.2")
    train_here(dataset, tmp_path / "straight", "--num-epochs", "2", *extra)
    train_here(dataset, tmp_path / "resumed", "--num-epochs", "1", *extra)
    records = train_here(dataset, tmp_path / "resumed", "--num-epochs", "2", "--resume", *extra)
    assert [r["epoch"] for r in records] == [2]
    assert_same_weights(weights(tmp_path / "straight", 2), weights(tmp_path / "resumed", 2))
    straight, resumed = (json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[1])
                         for run in ("straight", "resumed"))
    assert straight["train"] == resumed["train"] and straight["val"] == resumed["val"]


def test_decoding_on_the_device_learns_and_resumes_bit_exactly(dataset, tmp_path):
    """``--decode-on device`` (batched decoding on the training device; libjpeg-turbo here)."""
    extra = ("--decode-on", "device", "--random-crop", "1", "--max-random-scale", "1.25", "--max-random-l", "10")
    train_here(dataset, tmp_path / "straight", "--num-epochs", "2", *extra)
    train_here(dataset, tmp_path / "resumed", "--num-epochs", "1", *extra)
    train_here(dataset, tmp_path / "resumed", "--num-epochs", "2", "--resume", *extra)
    assert_same_weights(weights(tmp_path / "straight", 2), weights(tmp_path / "resumed", 2))
    meta = runs.read_meta(str(tmp_path / "straight"))
    assert meta["args"]["decode_on"] == "device" and meta["metrics"]["val"]["accuracy"] > 0.6


def test_accumulated_batches_equal_one_larger_batch(dataset, tmp_path):
    """k batches of 16 accumulated make, bit for bit, the update of one batch of 16k whose k
    parts have batch norms of their own (``--cpu-devices k``, as k devices)."""
    train_here(dataset, tmp_path / "accumulated", "--num-epochs", "1", "--grad-accum", "2")
    train_here(dataset, tmp_path / "larger", "--num-epochs", "1", "--batch-size", "32", "--cpu-devices", "2")
    assert_same_weights(weights(tmp_path / "accumulated", 1), weights(tmp_path / "larger", 1))


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(dataset, tmp_path):
    """torchrun with 2 CPU processes (DistributedDataParallel over gloo) of batch 16 each
    trains as 1 process of batch 32 split over 2 devices. SGD: Adam's division by the root
    of the second moment turns the float32 noise of a different summation order (threads,
    all-reduce) of near-zero gradients into steps of +-lr. Batch-norm statistics are left
    out: DistributedDataParallel keeps rank 0's (as Gluon saves its first device's), while
    the parts of one process's batch update one copy in turn."""
    extra = ("--num-epochs", "1", "--optimizer", "sgd", "--lr", "0.02")
    train_here(dataset, tmp_path / "one", "--batch-size", "32", "--cpu-devices", "2", *extra)
    done = torchrun_two_processes(dataset, tmp_path / "two", *extra)
    assert "worker 1 of 2" in done.stderr + done.stdout
    assert runs.load_meta(str(tmp_path / "two"), 1)["num_workers"] == 2
    one, two = ({name: array for name, array in weights(tmp_path / run, 1).items() if "running_" not in name}
                for run in ("one", "two"))
    assert_same_weights(one, two, rtol=1e-4, atol=1e-6)
    # the training metrics count both processes' images (rank 0's alone: loss 0.8043 against 0.8091)
    [one], [two] = (metric_records(tmp_path / run) for run in ("one", "two"))
    assert two["train"] == pytest.approx(one["train"], rel=1e-6)


@pytest.mark.slow
def test_two_gloo_processes_log_and_validate_as_one_process(dataset, tmp_path):
    """Each of 2 processes validates its contiguous range of whole products (the middle
    record of the validation file is inside a product: the cut moves to the product's end),
    and the sums over both give the figures of one process with 2 devices: the same product
    accuracy, exactly, and training metrics in every log line and in ``metrics.jsonl``.
    Frozen epochs, so that both hold the same batch-norm statistics (DistributedDataParallel
    keeps rank 0's, while the 2 parts of one process's batch update one copy in turn)."""
    headers = read_record_headers(open_record_file(dataset[1]))
    [(_, cut), _] = product_ranges(headers.product_ids, 2)
    middle = len(headers.product_ids) // 2
    assert cut > middle and headers.product_ids[middle - 1] == headers.product_ids[middle]
    extra = ("--num-epochs", "2", "--freeze-epochs", "2", "--optimizer", "sgd", "--lr", "0.05")
    train_here(dataset, tmp_path / "one", "--batch-size", "32", "--cpu-devices", "2", *extra)
    torchrun_two_processes(dataset, tmp_path / "two", *extra)
    one, two = (metric_records(tmp_path / run) for run in ("one", "two"))
    for a, b in zip(one, two):
        assert b["val"]["product_accuracy"] == a["val"]["product_accuracy"]
        assert b["val"]["accuracy"] == a["val"]["accuracy"]
        assert b["val"]["cross-entropy"] == pytest.approx(a["val"]["cross-entropy"], rel=1e-6)
        assert b["train"] == pytest.approx(a["train"], rel=1e-6)
    assert 0.1 < one[0]["val"]["product_accuracy"] < 0.9     # neither all products right nor none
    logged = [batch_lines(tmp_path / run) for run in ("one", "two")]
    assert logged[0] and logged[1] == pytest.approx(logged[0], abs=2e-6)


def test_from_run_with_a_freeze_phase_trains_only_the_classifier(dataset, one_epoch_run, tmp_path):
    """``--from-run`` loads a run's ``.params`` (Gluon's format and names); while frozen only
    the parameters whose Gluon names match ``--freeze-keep`` (``^output\\.``) learn."""
    train_here(dataset, tmp_path / "child", "--num-epochs", "1", "--from-run", str(one_epoch_run),
               "--freeze-epochs", "1", "--lr", "1e-2")
    parent, child = weights(one_epoch_run, 1), weights(tmp_path / "child", 1)
    changed = sorted(name for name in parent if "running_" not in name and not np.array_equal(parent[name],
                                                                                            child[name]))
    assert changed == ["output.bias", "output.weight"]


def test_gluon_computes_what_the_torch_run_learned(one_epoch_run, tmp_path):
    """The ``.params`` of a PyTorch run, loaded by the Gluon network (in an MXNet child
    process, as the predictor and the ensemble load a run), gives the twin's logits."""
    import torch
    from models.torch_nets.build import create_torch_model
    params = runs.params_path(str(one_epoch_run), 1)
    model = create_torch_model("resnext_tiny", 4)
    model.load_state_dict(gluon_weights_to_state(params, "resnext_tiny"))
    x = images(0)
    np.savez(tmp_path / "x.npz", x=x)
    run_gluon_side([{"op": "load", "name": "resnext_tiny", "classes": 4, "params": params,
                     "x": str(tmp_path / "x.npz"), "out": str(tmp_path / "gluon.npz")}], tmp_path, "load")
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x)).numpy()
    assert_same_outputs(logits, np.load(tmp_path / "gluon.npz")["logits"])


def test_imagenet_weights_of_a_timm_file_start_the_backbone(dataset, tmp_path):
    """``--pretrained`` takes a timm/torchvision file (here one of the twin's own layout with
    a 1000-class classifier, as timm's ``*.gluon_in1k`` files are): its backbone is loaded,
    the classifier is a fresh one; a freeze phase keeps the backbone as loaded."""
    import torch
    from safetensors.torch import save_file
    from models.torch_nets.build import create_torch_model
    from models.weight_convert import torch_to_gluon
    torch.manual_seed(5)
    imagenet = create_torch_model("resnext_tiny", 1000).state_dict()
    save_file(imagenet, str(tmp_path / "imagenet.safetensors"))
    train_here(dataset, tmp_path / "run", "--num-epochs", "1", "--pretrained", str(tmp_path / "imagenet.safetensors"),
               "--freeze-epochs", "1")
    loaded = torch_to_gluon("resnext_tiny", {k: v.numpy() for k, v in imagenet.items()})
    trained = weights(tmp_path / "run", 1)
    assert trained["output.weight"].shape == (4, loaded["output.weight"].shape[1])
    assert_same_weights({k: v for k, v in trained.items() if "running_" not in k and not k.startswith("output.")},
                        {k: v for k, v in loaded.items() if "running_" not in k and not k.startswith("output.")})
    assert "initialised from ImageNet weights" in (tmp_path / "run" / "train.log").read_text()


def test_imagenet_weights_in_other_names_are_refused_saying_which_files_fit(dataset, tmp_path):
    from models.weight_convert import WeightConversionError
    published = str(tmp_path / "dpn92-0000.params")       # the DPN authors' symbolic names
    params_file.save(published, {"arg:conv1_x_1__conv_weight": np.zeros((4, 3, 3, 3), np.float32)})
    with pytest.raises(WeightConversionError, match=r"dpn92-0000\.params: Gluon weights do not fit resnext_tiny.*"
                                                    r"--backend torch takes ImageNet weights as timm's"):
        train_here(dataset, tmp_path / "run", "--num-epochs", "1", "--pretrained", published)


def test_another_networks_run_starts_the_shared_layers(dataset, one_epoch_run, tmp_path):
    """SE-ResNeXt from a ResNeXt run (the reference's M11/M13): the layers both have and, with
    the same classes, the classifier come from the run; the squeeze-excitations are new."""
    train_here(dataset, tmp_path / "se", "--num-epochs", "1", "--network", "se_resnext_tiny", "--from-run",
               str(one_epoch_run), "--freeze-epochs", "1", "--freeze-keep", "^$|se", "--lr", "1e-2")
    parent, child = weights(one_epoch_run, 1), weights(tmp_path / "se", 1)
    shared = [name for name in parent if "running_" not in name]
    assert len(shared) < len([name for name in child if "running_" not in name])
    assert_same_weights({name: child[name] for name in shared}, {name: parent[name] for name in shared})
    assert "copied the classifier" in (tmp_path / "se" / "train.log").read_text()


# (parent run, network, --freeze-keep): the default, every batch norm frozen (the issue's
# dpn_tiny); the squeeze-excitations of an SE-ResNeXt started from a ResNeXt (M11/M13), which
# a gradient reaches from the second stage on, but not the first stage's shortcut.
FROZEN_CASES = [("dpn", "dpn_tiny", r"^output\."), ("resnext", "se_resnext_tiny", r"\.se\.")]


@pytest.mark.parametrize("parent, network, keep", FROZEN_CASES, ids=[case[1] for case in FROZEN_CASES])
def test_frozen_batchnorms_keep_their_statistics_as_mxnets_do(dataset, one_epoch_run, dpn_run, tmp_path, parent,
                                                             network, keep):
    """After a frozen epoch from the same weights, the MXNet and PyTorch backends have moved
    the statistics of the same batch norms (those a gradient reaches) and kept the others
    bit for bit (PyTorch moved them all before)."""
    parent_run = {"dpn": dpn_run, "resnext": one_epoch_run}[parent]
    extra = ("--num-epochs", "1", "--network", network, "--from-run", str(parent_run), "--freeze-epochs", "1",
             "--freeze-keep", keep, "--lr", "1e-2")
    train_with_mxnet(dataset, tmp_path / "mxnet", *extra)
    train_here(dataset, tmp_path / "torch", *extra)
    start = {name: array for name, array in weights(parent_run, 1).items() if "running_" in name}
    after = {backend: weights(tmp_path / backend, 1) for backend in ("mxnet", "torch")}
    moved = {backend: sorted(name for name in start if not np.array_equal(run[name], start[name]))
             for backend, run in after.items()}
    expected = [] if network == "dpn_tiny" else sorted(name for name in start if not name.startswith(("features.1.",
                                                                                                     "features.4.")))
    assert moved["torch"] == moved["mxnet"] == expected
    for name in set(start) - set(expected):
        np.testing.assert_array_equal(after["torch"][name], after["mxnet"][name], err_msg=name)


def test_nag_resumes_bit_exactly_and_older_sgd_states_convert(dataset, tmp_path):
    """MXNet's momentum rule (``--optimizer nag``, a learning-rate step at the resume) resumes
    bit for bit; a checkpoint of before it, holding ``torch.optim.SGD``'s momentum, resumes
    with its momentum converted (a warning says so) to the same weights within float32
    rounding (1e-5 relative)."""
    import torch
    from models.torch_nets.build import create_torch_model
    from train.torch_backend.backend import decays
    extra = ("--optimizer", "nag", "--lr", "0.02", "--lr-step-epochs", "1")
    train_here(dataset, tmp_path / "straight", "--num-epochs", "2", *extra)
    train_here(dataset, tmp_path / "resumed", "--num-epochs", "1", *extra)
    shutil.copytree(tmp_path / "resumed", tmp_path / "older")
    states = runs.states_path(str(tmp_path / "older"), 1)
    saved = torch.load(states, weights_only=True)
    named = list(create_torch_model("resnext_tiny", 4).named_parameters())
    sgd = torch.optim.SGD([{"params": [p for n, p in named if decays(n)]},
                           {"params": [p for n, p in named if not decays(n)]}], lr=0.02, momentum=0.9, nesterov=True)
    mxnet_state = saved["optimizer"]
    sgd.load_state_dict({"state": {index: {"momentum_buffer": entry["mxnet_momentum"] / -0.02}
                                   for index, entry in mxnet_state["state"].items()},
                         "param_groups": [dict(group, lr=0.02, weight_decay=mine["weight_decay"])
                                          for group, mine in zip(sgd.state_dict()["param_groups"],
                                                                 mxnet_state["param_groups"])]})
    torch.save(dict(saved, optimizer=sgd.state_dict()), states)
    train_here(dataset, tmp_path / "resumed", "--num-epochs", "2", "--resume", *extra)
    train_here(dataset, tmp_path / "older", "--num-epochs", "2", "--resume", *extra)
    assert_same_weights(weights(tmp_path / "straight", 2), weights(tmp_path / "resumed", 2))
    assert "holds torch.optim.SGD's momentum" in (tmp_path / "older" / "train.log").read_text()
    assert_same_weights(weights(tmp_path / "resumed", 2), weights(tmp_path / "older", 2), rtol=1e-5, atol=1e-6)


def test_frozen_batchnorms_normalise_with_the_batch_and_get_their_momentum_back():
    """While frozen, a batch norm no gradient reaches still normalises with the batch's
    statistics (training mode) and keeps its running ones; unfrozen, it updates them again."""
    import torch
    from models.torch_nets.build import create_torch_model
    from train.torch_backend import frozen_batchnorm
    torch.manual_seed(3)
    model = create_torch_model("se_resnext_tiny", 4)
    x = torch.rand(4, 3, 32, 32) * 255
    frozen = {name for name, _ in model.named_parameters() if ".se." not in name}
    stale = frozen_batchnorm.stale_batchnorms(model, frozen, x[:1])
    # the first stage's shortcut is registered after a trained SE layer but takes no gradient from it
    assert stale == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.0.bn3", "layer1.0.downsample.1"]
    assert model.training and all(p.requires_grad for p in model.parameters() if p.dtype.is_floating_point)
    momenta = frozen_batchnorm.keep_statistics(model, stale)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items() if "running_" in name}
    trained = model(x)
    after = model.state_dict()
    assert all(torch.equal(after[name], before[name]) == name.startswith(("bn1.", "layer1.")) for name in before)
    with torch.no_grad():
        assert (trained - model.eval()(x)).abs().max() > 1e-3      # the running statistics give other outputs
    model.train()
    frozen_batchnorm.restore_momenta(model, momenta)
    assert model(x).shape == trained.shape and not torch.equal(model.state_dict()["bn1.running_mean"],
                                                               before["bn1.running_mean"])
    assert model.bn1.momentum == 0.1
