"""Unit tests of the training package's pieces: schedule, epochs, metrics, loss, logs,
record checks, checkpoints bookkeeping, devices, the launcher plan and NAdam."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from data.errors import DataInputError
from data.recordio import RecordFileError
from helpers import write_rec, write_synthetic_dataset
from data.products import ProductAccuracy, product_ranges
from models import training_log
from models.training_log import read_training_log
from train.schedule import learning_rate_at
from train import logs
from train.mxnet_backend import checkpoint, devices, launch, optim
from train.mxnet_backend import metrics as metrics_mxnet
from train.mxnet_backend.step import LabelSmoothingCrossEntropy
from train import inputs
from data import record_file
from train.mxnet_backend import record_iter
from models import runs

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("rec")), num_classes=5, train_products=40,
                                   val_products=25, seed=3)


# --- schedule and epochs --------------------------------------------------------------

def test_learning_rate_steps_and_warmup():
    steps = dict(base_lr=1e-4, step_epochs=[10, 13, 15], factor=0.2)
    assert learning_rate_at(0.0, **steps) == pytest.approx(1e-4)
    assert learning_rate_at(9.99, **steps) == pytest.approx(1e-4)
    assert learning_rate_at(10.0, **steps) == pytest.approx(2e-5)
    assert learning_rate_at(14.5, **steps) == pytest.approx(1e-4 * 0.2 ** 2)
    assert learning_rate_at(20, **steps) == pytest.approx(1e-4 * 0.2 ** 3)
    warm = dict(steps, warmup_epochs=2.0, warmup_begin_lr=0.0)
    assert learning_rate_at(0.0, **warm) == 0.0
    assert learning_rate_at(1.0, **warm) == pytest.approx(5e-5)
    assert learning_rate_at(2.0, **warm) == pytest.approx(1e-4)


def test_batches_per_epoch():
    assert inputs.batches_per_epoch(1000, 64) == 15
    assert inputs.batches_per_epoch(1000, 64, epoch_size=500) == 7
    assert inputs.batches_per_epoch(1001, 64, num_parts=2) == 7            # 500 per worker
    assert inputs.batches_per_epoch(1000, 64, num_parts=2, epoch_size=600) == 4
    assert inputs.batches_per_epoch(1000, 64, grad_accum=4) == 12          # whole steps of 4 batches
    with pytest.raises(record_file.DataFileError, match="smaller than one optimizer step"):
        inputs.batches_per_epoch(100, 64, grad_accum=2)


# --- metrics ---------------------------------------------------------------------------

def test_product_accuracy_streams_products_split_across_batches():
    rng = np.random.RandomState(0)
    product_ids = np.repeat(np.arange(0, 60, 2), rng.randint(1, 5, 30))
    labels = (product_ids // 2) % 7
    probs = rng.dirichlet(np.ones(7), len(product_ids))
    expected = np.mean([probs[product_ids == p].mean(axis=0).argmax() == labels[product_ids == p][0]
                        for p in np.unique(product_ids)])
    streamed = ProductAccuracy()
    for start in range(0, len(product_ids), 5):  # batches of 5 cut products apart
        streamed.update(probs[start:start + 5], product_ids[start:start + 5], labels[start:start + 5])
    assert streamed.result() == pytest.approx(expected)
    assert streamed.products == 30


def test_product_accuracy_rejects_shuffled_records():
    accuracy = ProductAccuracy()
    accuracy.update(np.eye(3), np.array([1, 2, 3]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="not consecutive"):
        accuracy.update(np.eye(3)[:2], np.array([4, 1]), np.array([0, 0]))


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 40])
def test_product_ranges_cut_between_products_and_score_as_the_whole(parts):
    """Distributed validation: contiguous ranges of whole products, as even as that allows
    (empty ones past the last product), whose counts sum to those of all records."""
    rng = np.random.RandomState(4)
    product_ids = np.repeat(np.arange(100, 130), rng.randint(1, 5, 30))
    labels = rng.randint(0, 7, 30)[product_ids - 100]
    probs = rng.dirichlet(np.ones(7), len(product_ids))
    whole = ProductAccuracy()
    whole.update(probs, product_ids, labels)
    whole.result()
    ranges = product_ranges(product_ids, parts)
    assert len(ranges) == parts and ranges[0][0] == 0 and ranges[-1][1] == len(product_ids)
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:]))
    assert all(product_ids[start - 1] != product_ids[start] for start, _ in ranges[1:] if 0 < start < len(product_ids))
    assert max(stop - start for start, stop in ranges) <= len(product_ids) / parts + 4
    counts = []
    for start, stop in ranges:
        part = ProductAccuracy()
        part.update(probs[start:stop], product_ids[start:stop], labels[start:stop])
        part.result()
        counts.append((part.correct, part.products))
    assert tuple(map(sum, zip(*counts))) == (whole.correct, whole.products) and whole.products == 30


def test_product_ranges_reject_a_product_that_comes_back():
    with pytest.raises(ValueError, match="product 1 are not consecutive"):
        product_ranges(np.array([1, 1, 2, 1]), 2)


def test_running_sums_match_numpy():
    rng = np.random.RandomState(1)
    logits, labels = rng.randn(40, 9).astype(np.float32), rng.randint(0, 9, 40)
    sums = metrics_mxnet.RunningSums(top_k=5)
    for part in np.array_split(np.arange(40), 2):   # as from two devices
        sums.update([mx.nd.array(logits[part])], [mx.nd.array(labels[part])])
    values = sums.metrics()
    log_prob = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert values["accuracy"] == pytest.approx((logits.argmax(1) == labels).mean())
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert values["top_k_accuracy_5"] == pytest.approx((top5 == labels[:, None]).any(1).mean())
    assert values["cross-entropy"] == pytest.approx(-log_prob[np.arange(40), labels].mean(), rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_smoothing_loss(smoothing):
    rng = np.random.RandomState(2)
    logits, labels = rng.randn(8, 6).astype(np.float32), rng.randint(0, 6, 8)
    target = np.full((8, 6), smoothing / 5)
    target[np.arange(8), labels] = 1 - smoothing
    log_prob = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(target * log_prob).sum(1)
    loss = LabelSmoothingCrossEntropy(6, smoothing)
    loss.hybridize()
    got = loss(mx.nd.array(logits), mx.nd.array(labels)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    if smoothing == 0:
        gluon_loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(mx.nd.array(logits), mx.nd.array(labels))
        np.testing.assert_allclose(got, gluon_loss.asnumpy(), rtol=1e-5)


# --- logs ------------------------------------------------------------------------------

def test_log_lines_are_read_by_the_ensembles_log_reader(tmp_path):
    lines = [*training_log.argument_lines({"network": "dpn92", "load_epoch": 2}),
             training_log.speed_line(3, 100, 535.123, {"accuracy": 0.7, "cross-entropy": 1.5}),
             training_log.speed_line(3, 200, 500.0, {"accuracy": 0.72}),
             *training_log.epoch_lines(3, "Train", {"accuracy": 0.71, "top_k_accuracy_5": 0.9}),
             training_log.time_cost_line(3, 123.4),
             *training_log.epoch_lines(3, "Validation", {"accuracy": 0.73, "product_accuracy": 0.75}),
             training_log.checkpoint_line("runs/x/epoch-0004.params")]
    assert lines[2] == "Epoch[3] Batch [100]\tSpeed: 535.12 samples/sec\taccuracy=0.700000\tcross-entropy=1.500000"
    path = tmp_path / "train.log"
    logger = logs.setup_logging(str(path), console=False)
    for line in lines:
        logger.info(line)
    log = read_training_log(str(path))
    assert log.args == {"network": "dpn92", "load_epoch": "2"}
    assert log.epochs[3].train == {"accuracy": 0.71, "top_k_accuracy_5": 0.9}
    assert log.epochs[3].validation == {"accuracy": 0.73, "product_accuracy": 0.75}
    assert log.epochs[3].time_cost == 123.4 and log.epochs[3].speeds == [535.12, 500.0]
    assert log.final == (3, 0.73)


# --- record files ----------------------------------------------------------------------

def test_read_record_headers(dataset):
    record = record_file.open_record_file(dataset["val"])
    headers = record_file.read_record_headers(record)
    assert record.num_records == len(dataset["val_labels"])
    np.testing.assert_array_equal(headers.labels, dataset["val_labels"])
    np.testing.assert_array_equal(headers.product_ids, dataset["val_product_ids"])
    assert headers.image_numbers[0] == 0


def test_record_file_errors(dataset, tmp_path):
    with pytest.raises(record_file.DataFileError, match="does not exist"):
        record_file.open_record_file(str(tmp_path / "missing.rec"))
    lonely = str(tmp_path / "lonely.rec")
    with open(dataset["val"], "rb") as src, open(lonely, "wb") as dst:
        dst.write(src.read())
    with pytest.raises(record_file.DataFileError, match="has no index"):
        record_file.open_record_file(lonely)
    # the training file's index beside a copy of the (smaller) validation file
    with open(dataset["train"][:-4] + ".idx") as src, open(lonely[:-4] + ".idx", "w") as dst:
        dst.write(src.read())
    with pytest.raises(record_file.DataFileError, match="belongs to another .rec"):
        record_file.open_record_file(lonely)
    # the (smaller) validation index beside a copy of the training file: offsets inside, wrong places
    mixed = str(tmp_path / "mixed.rec")
    os.link(dataset["train"], mixed)
    os.link(dataset["val"][:-4] + ".idx", mixed[:-4] + ".idx")
    with pytest.raises(RecordFileError, match=r"mixed.rec: offset \d+: record \d+ of .*mixed.idx: no record starts "
                                              r"here: the index does not belong to this .rec"):
        record_file.open_record_file(mixed)


def test_class_count_check(dataset):
    record = record_file.open_record_file(dataset["train"])
    headers = record_file.read_record_headers(record)
    record_file.check_labels(record, 5)
    first = int(np.flatnonzero(headers.labels == 4)[0])
    with pytest.raises(DataInputError, match=r"A_train.rec: offset %d, product %d: record %d \(image %d\) has label "
                                             r"4, .* --num-classes 4 .*class count disagrees"
                                             % (record.offsets[first], headers.product_ids[first], first,
                                                headers.image_numbers[first])):
        record_file.check_labels(record, 4)


def test_validation_iterator_pads_last_batch(dataset):
    """A fresh un-shuffled iterator: file order, last batch padded, pad reported."""
    record = record_file.open_record_file(dataset["val"])
    # the iterator recycles its output arrays: read each batch before the next one
    labels, pads = zip(*[(b.label[0].asnumpy(), b.pad)
                         for b in record_iter.image_iter(record, 16, (3, 32, 32), (0, 0, 0), 1.0)])
    assert len(labels) == -(-record.num_records // 16)
    assert pads[-1] == len(labels) * 16 - record.num_records and not any(pads[:-1])
    labels = np.concatenate(labels)[:record.num_records]
    np.testing.assert_array_equal(labels, dataset["val_labels"])


def test_batches_stay_intact_while_pending_operations_read_them(dataset):
    """The network reads a batch asynchronously, after the loop has asked for the next one:
    the iterator must not decode into memory still to be read (MXNet's ctx='cpu' variant does)."""
    record = record_file.open_record_file(dataset["train"])
    big = mx.nd.random.uniform(shape=(500, 500))
    reads = []
    for batch in record_iter.image_iter(record, 8, (3, 32, 32), (0, 0, 0), 1.0, shuffle=True, seed=1):
        data = batch.data[0]
        expected = data.asnumpy().sum()
        slow_zero = mx.nd.dot(big, big).sum().reshape((1, 1, 1, 1)) * 0
        reads.append((expected, mx.nd.broadcast_add(data, slow_zero).sum()))   # reads `data` late
    assert len(reads) > 5
    for expected, late in reads:
        assert late.asscalar() == pytest.approx(expected, rel=1e-5)


def test_epoch_order_depends_on_seed_and_epoch_only(dataset):
    record = record_file.open_record_file(dataset["train"])
    aug = inputs.Augmentation(random_mirror=True)

    def first_batches(epoch):
        seed = inputs.train_epoch_seed(7, epoch)
        it = record_iter.image_iter(record, 8, (3, 32, 32), (0, 0, 0), 1.0, shuffle=True, seed=seed, augmentation=aug)
        return [b.data[0].asnumpy() for _, b in zip(range(3), it)]

    again = first_batches(1)
    for a, b in zip(first_batches(1), again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first_batches(2), again))


# --- checkpoints -------------------------------------------------------------------------

class _Net(mx.gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.output = mx.gluon.nn.Dense(3)

    def hybrid_forward(self, F, x):
        return self.output(x)


def test_checkpoint_counts_only_epochs_with_json(tmp_path):
    net = _Net()
    net.initialize()
    net(mx.nd.ones((1, 4)))
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    run = str(tmp_path / "run")
    assert runs.latest_epoch(run) is None
    checkpoint.save_checkpoint(run, 1, net, trainer, {"model": "x"})
    checkpoint.save_checkpoint(run, 2, net, trainer, {"model": "x"})
    os.remove(os.path.join(run, "epoch-0002.json"))          # killed before the JSON was written
    assert runs.complete_epochs(run) == [1]
    assert runs.resolve_checkpoint(run) == (run, 1)
    assert runs.resolve_checkpoint(os.path.join(run, "epoch-0001.params")) == (run, 1)
    with open(os.path.join(run, "epoch-0001.json")) as f:
        assert json.load(f) == {"model": "x", "epoch": 1}
    with pytest.raises(runs.CheckpointError, match="not complete"):
        runs.resolve_checkpoint(run, 2)
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


# --- devices and launcher -----------------------------------------------------------------

def test_device_errors():
    assert devices.training_contexts("", 2) == [mx.cpu(0), mx.cpu(1)]
    if mx.context.num_gpus() == 0:
        with pytest.raises(devices.DeviceError, match="GPU|CUDA"):
            devices.training_contexts("0,1")
    with pytest.raises(devices.DeviceError, match="GPU numbers"):
        devices.parse_gpus("0,a")
    with pytest.raises(devices.DeviceError, match="nccl needs GPUs"):
        devices.create_kvstore("nccl", [mx.cpu(0), mx.cpu(1)])
    if "DMLC_ROLE" not in os.environ:
        with pytest.raises(devices.DeviceError, match="train.mxnet_backend.launch"):
            devices.create_kvstore("dist_sync", [mx.cpu()])


def test_launch_plan_local_and_ssh(tmp_path):
    local = launch.plan(["python", "train.py"], num_workers=2, num_servers=1)
    assert [role for role, _, _ in local] == ["scheduler", "server", "worker", "worker"]
    for role, argv, env in local:
        assert env["DMLC_ROLE"] == role and env["DMLC_PS_ROOT_URI"] == "127.0.0.1"
        assert env["DMLC_NODE_HOST"] == "127.0.0.1" and env["DMLC_NUM_WORKER"] == "2"
    assert local[-1][1] == ["python", "train.py"]
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1\nnode2:2222 slots=8\n")
    hosts = launch.read_hostfile(str(hostfile))
    assert hosts == [("node1", "22"), ("node2", "2222")]
    remote = launch.plan(["python", "train.py"], 2, 1, hosts=hosts, host_ip="10.0.0.1", port=9000, workdir="/w")
    ssh_lines = [argv for role, argv, _ in remote[1:]]
    assert ssh_lines[0][:6] == ["ssh", "-o", "StrictHostKeyChecking=no", "-p", "22", "node1"]
    assert "DMLC_ROLE=server" in ssh_lines[0][-1] and "DMLC_PS_ROOT_URI=10.0.0.1" in ssh_lines[0][-1]
    assert ssh_lines[1][5] == "node2" and "DMLC_ROLE=worker" in ssh_lines[1][-1]
    assert ssh_lines[1][-1].endswith("cd /w; python train.py")


# --- NAdam -----------------------------------------------------------------------------------

def test_nadam_equals_mxnet_nadam_for_one_parameter():
    """With a single parameter on one device MXNet's shared momentum schedule is advanced
    once per step, i.e. it equals the per-parameter schedule: both must agree exactly."""
    rng = np.random.RandomState(4)
    ours, theirs = optim.NAdam(learning_rate=0.01, wd=0.01), mx.optimizer.Nadam(learning_rate=0.01, wd=0.01)
    w_ours, w_theirs = mx.nd.array(rng.randn(5, 3)), mx.nd.array(rng.randn(5, 3))
    w_theirs[:] = w_ours
    s_ours, s_theirs = ours.create_state(0, w_ours), theirs.create_state(0, w_theirs)
    for _ in range(30):
        grad = mx.nd.array(rng.randn(5, 3))
        ours.update(0, w_ours, grad, s_ours)
        theirs.update(0, w_theirs, grad, s_theirs)
    np.testing.assert_allclose(w_ours.asnumpy(), w_theirs.asnumpy(), rtol=1e-6, atol=1e-7)


def test_write_rec_keeps_header_fields(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    write_rec(str(tmp_path / "x"), [4], [123456789012], [3], [img])
    headers = record_file.read_record_headers(record_file.open_record_file(str(tmp_path / "x.rec")))
    assert (headers.labels[0], headers.product_ids[0], headers.image_numbers[0]) == (4, 123456789012, 3)
