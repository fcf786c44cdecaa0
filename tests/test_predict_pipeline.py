"""The ZeroMQ prediction pipeline with real processes, sockets, MXNet and BSON/RecordIO files."""
import multiprocessing
import os
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from data.bson_index import BsonIndex
from data.categories import CategoryMap
from data.errors import DataInputError
from helpers import jpeg_bytes, still_running, write_bson
from models import runs
from pipeline_kills import assert_a_kill_ends_the_run_naming_it, kill_when_running
from predict.decode import Views
from predict.checkpoints import CheckpointModel
from predict.outputs import Predictions
from predict.pipeline import PipelineConfig, PipelineError
from predict.run import predict_input
from predict_world import SlowCheckpointModel, write_val_rec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(**kwargs):
    kwargs.setdefault("views", Views(flip=True))
    return PipelineConfig(batch_size=kwargs.pop("batch_size", 16), progress=False, stall_timeout=60, **kwargs)


def assert_same_predictions(a, b, variants):
    assert a.manifest["products"] == b.manifest["products"]
    for name in ("ids", "labels", "n_images", "product_hash"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for v in variants:
        # float16 storage: one unit in the last place of values up to 1
        np.testing.assert_allclose(np.asarray(a.probs(v), np.float32), np.asarray(b.probs(v), np.float32),
                                   atol=1e-3, err_msg=v)


def test_zmq_pipeline_gives_the_in_process_loop_probabilities(world, tmp_path):
    categories = CategoryMap.from_csv(world.categories)
    handles = [CheckpointModel(r) for r in world.runs]
    kwargs = dict(categories=categories, combiners=("mean", "geometric", "max"), md5_modes=("none", "unique"),
                  md5_dict_path=world.md5_dict)
    plain = predict_input(world.val_bson, handles, str(tmp_path / "plain"), config(decoders=0), **kwargs)
    zmq_bson = predict_input(world.val_bson, handles, str(tmp_path / "zmq"), config(decoders=2, batch_size=7),
                             **kwargs)
    rec = write_val_rec(world.val_bson, categories, str(tmp_path / "A_val.rec"))
    zmq_rec = predict_input(rec, handles, str(tmp_path / "rec"), config(decoders=1, transport="tcp"), **kwargs)

    index = BsonIndex.load_or_build(world.val_bson)
    variants = plain[0]["variants"]
    assert variants == ["mean.none", "geometric.none", "max.none", "mean.unique", "geometric.unique", "max.unique"]
    for name in ("dpn_tiny", "resnext_tiny"):
        reference = Predictions(str(tmp_path / "plain" / name))
        # every product exactly once, in input order, with its label
        np.testing.assert_array_equal(reference.ids, index.product_ids)
        np.testing.assert_array_equal(reference.labels, categories.classes_of(index.category_ids))
        np.testing.assert_array_equal(reference.n_images, index.n_images)
        probs = np.asarray(reference.probs("mean.none"), np.float32)
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=5e-3)
        np.testing.assert_array_equal(np.asarray(reference.top("mean.none"))[:, 0], probs.argmax(axis=1))
        for folder in ("zmq", "rec"):
            assert_same_predictions(reference, Predictions(str(tmp_path / folder / name)), variants)
    for manifests in (plain, zmq_bson, zmq_rec):
        assert [m["name"] for m in manifests] == ["dpn_tiny", "resnext_tiny"]
        assert 0 <= manifests[0]["image_accuracy"] <= 1
        assert manifests[0]["image_accuracy"] == pytest.approx(plain[0]["image_accuracy"])
        assert manifests[0]["product_accuracy"] == pytest.approx(plain[0]["product_accuracy"])


def test_models_of_different_input_sizes_predict_in_one_run_each_at_its_own(world, tmp_path):
    """Pictures are decoded to the largest input, the smaller model's brought to its own
    size: it predicts as it does alone (pictures decoded straight to its size)."""
    small = str(tmp_path / "runs" / "dpn_small")
    shutil.copytree(world.runs[0], small)
    meta_path = os.path.join(small, "epoch-0001.json")
    with open(meta_path) as f:
        meta = json.load(f)
    with open(meta_path, "w") as f:
        json.dump(dict(meta, image_shape=[3, 64, 64], mean=[120.0, 110.0, 100.0], scale=0.02), f)
    categories = CategoryMap.from_csv(world.categories)
    both = predict_input(world.val_bson, [CheckpointModel(world.runs[0]), CheckpointModel(small)],
                         str(tmp_path / "both"), config(decoders=1), categories)
    alone = predict_input(world.val_bson, [CheckpointModel(small)], str(tmp_path / "alone"), config(decoders=0),
                          categories)
    assert [m["image_size"] for m in both + alone] == [[180, 180], [180, 180], [64, 64]]
    assert [m["model"]["image_shape"] for m in both] == [[3, 180, 180], [3, 64, 64]]
    assert both[1]["model"]["mean"] == [120.0, 110.0, 100.0] and both[1]["model"]["scale"] == 0.02
    assert_same_predictions(Predictions(str(tmp_path / "both" / "dpn_small")),
                            Predictions(str(tmp_path / "alone" / "dpn_small")), ["mean.none"])


@pytest.mark.parametrize("role", ["decoder", "model worker"])
def test_killing_a_process_mid_run_fails_fast_and_names_it(world, tmp_path, role):
    out = tmp_path / "out"
    out.mkdir()
    handles = [SlowCheckpointModel(world.runs[0], delay=0.3)]
    assert_a_kill_ends_the_run_naming_it(role, lambda: predict_input(
        world.val_bson, handles, str(out), config(decoders=2, batch_size=4),
        categories=CategoryMap.from_csv(world.categories)), out)


# A predictor with a slow network (0.5 s a batch of one product), for a test to SIGKILL.
SLOW_PREDICTOR = """
import sys
from data.categories import CategoryMap
from predict.decode import Views
from predict.pipeline import PipelineConfig
from predict.run import predict_input
from predict_world import SlowCheckpointModel
source, run, categories, out = sys.argv[1:]
predict_input(source, [SlowCheckpointModel(run, delay=0.5)], out,
              PipelineConfig(decoders=2, batch_size=2, views=Views(flip=True), progress=False),
              categories=CategoryMap.from_csv(categories))
"""


def test_sigkill_of_the_parent_under_load_leaves_no_child_alive_after_2_s(world, tmp_path):
    """The model worker has a queue of products when its parent is killed (the out-of-memory
    killer): it used to work through them first, 5-35 s; every child now dies with the parent."""
    out = tmp_path / "out"
    out.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", SLOW_PREDICTOR, world.val_bson, world.runs[0], world.categories,
                               str(out)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not any(".tmp-" in name for name in os.listdir(out)) and time.time() < deadline:   # every child started
        time.sleep(0.05)
    time.sleep(2)                        # the decoders fill the model worker's queue meanwhile
    children = psutil.Process(parent.pid).children(recursive=True)
    assert len(children) == 4, children                 # reader, 2 decoders, model worker
    parent.kill()
    parent.wait()
    alive = still_running(children, timeout=2)
    assert not alive, f"children alive 2 s after their parent was killed: {alive}"


def test_a_stopped_process_is_reported_as_a_stall(world, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    handles = [SlowCheckpointModel(world.runs[0], delay=0.3)]
    thread, stopped = kill_when_running("decoder", signal.SIGSTOP, str(out), delay=0.3)
    cfg = config(decoders=1, batch_size=4, queue_size=2)
    cfg.stall_timeout = 2.0
    with pytest.raises(PipelineError) as err:
        predict_input(world.val_bson, handles, str(out), cfg, categories=CategoryMap.from_csv(world.categories))
    thread.join()
    assert f"decoder 0 (pid {stopped['pid']}) is stopped: pipeline stalled" in str(err.value)
    # what was queued behind the decoder drains (a few slow batches), then the stall timeout
    assert time.time() - stopped["time"] < 2.0 + 5
    assert not multiprocessing.active_children()


def corrupt_products():
    """Three test products: good, one corrupt image of two, every image corrupt."""
    return [{"_id": 10, "imgs": [{"picture": jpeg_bytes(1)}]},
            {"_id": 12, "imgs": [{"picture": jpeg_bytes(2)}, {"picture": b"\xff\xd8 not a jpeg"}]},
            {"_id": 15, "imgs": [{"picture": b"garbage"}]}]


def test_an_undecodable_image_stops_the_run_naming_file_offset_product_and_image(world, tmp_path):
    path = write_bson(str(tmp_path / "test.bson"), corrupt_products())
    offset = int(BsonIndex.load_or_build(path).records["offset"][1])
    with pytest.raises(PipelineError) as err:
        predict_input(path, [CheckpointModel(world.runs[1])], str(tmp_path / "out"), config(decoders=1))
    assert f"{path}: offset {offset}, product 12: image 1 (13 bytes) is not a decodable JPEG" in str(err.value)
    assert re.search(r"decoder 0 \(pid \d+\) failed", str(err.value))


@pytest.mark.parametrize("decoders", [0, 2])
def test_skip_bad_images_still_gives_every_product_one_row(world, tmp_path, decoders):
    path = write_bson(str(tmp_path / "test.bson"), corrupt_products())
    cfg = config(decoders=decoders, skip_bad_images=True)
    manifest, = predict_input(path, [CheckpointModel(world.runs[1])], str(tmp_path / "out"), cfg)
    assert len(manifest["problems"]) == 2 and "product 12: image 1" in manifest["problems"][0]
    preds = Predictions(str(tmp_path / "out" / "resnext_tiny"))
    np.testing.assert_array_equal(preds.ids, [10, 12, 15])
    np.testing.assert_array_equal(preds.labels, [-1, -1, -1])
    probs = np.asarray(preds.probs("mean.none"), np.float32)
    np.testing.assert_allclose(probs[2], np.full(6, 1 / 6), atol=1e-3)       # nothing decodable: uniform
    assert probs[1].max() > 1 / 6 + 0.01                                      # its good image decides


def test_predict_cli_runs_as_a_script_and_as_a_module(world, tmp_path):
    base = [sys.executable]
    args = ["--input", world.test_bson, "--models", *world.runs, "--categories", world.categories,
            "--batch-size", "16", "--no-progress", "--md5-dict", world.md5_dict, "--md5-mode", "none,l1",
            "--combiners", "all"]
    subprocess.run(base + [os.path.join(ROOT, "predict", "predict.py"), *args, "--out", str(tmp_path / "a"),
                           "--decoders", "1"], check=True, cwd=ROOT, capture_output=True, timeout=120)
    subprocess.run(base + ["-m", "predict.predict", *args, "--out", str(tmp_path / "b"), "--decoders", "0"],
                   check=True, cwd=str(tmp_path), capture_output=True, timeout=120)
    n_test = len(BsonIndex.load_or_build(world.test_bson))
    for name in ("dpn_tiny", "resnext_tiny"):
        a, b = Predictions(str(tmp_path / "a" / name)), Predictions(str(tmp_path / "b" / name))
        assert len(a) == n_test and len(a.variants) == 14
        assert a.manifest["model"]["epoch"] == 1 and a.manifest["tta"] == "flip"
        assert_same_predictions(a, b, a.variants)


def test_a_model_that_cannot_load_stops_the_run_naming_its_worker(world, tmp_path):
    damaged = tmp_path / "runs" / "damaged"
    shutil.copytree(world.runs[0], damaged)
    params = runs.read_meta(str(damaged))["params"]
    with open(params, "r+b") as f:               # the weights, read by the model worker, are truncated
        f.truncate(os.path.getsize(params) // 2)
    with pytest.raises(PipelineError, match=r"model worker 0 \(pid \d+\) failed: .*damaged.*epoch-0001.params"):
        predict_input(world.val_bson, [CheckpointModel(str(damaged))], str(tmp_path / "out"), config(decoders=1),
                      categories=CategoryMap.from_csv(world.categories))
    assert not multiprocessing.active_children()


def test_a_run_folder_without_a_checkpoint_is_refused_before_any_process_starts(world, tmp_path):
    empty_run = tmp_path / "runs" / "empty"
    empty_run.mkdir(parents=True)
    with pytest.raises(runs.CheckpointError, match=r"run folder .*empty holds no complete checkpoint"):
        predict_input(world.val_bson, [CheckpointModel(str(empty_run))], str(tmp_path / "out"), config(decoders=1),
                      categories=CategoryMap.from_csv(world.categories))
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("suffix", [".bson", ".rec"])
def test_an_empty_input_is_an_error_and_writes_nothing(world, tmp_path, suffix):
    path = str(tmp_path / f"empty{suffix}")
    open(path, "wb").close()
    with pytest.raises(DataInputError, match=f"{re.escape(path)}: no product to predict: the input is empty"):
        predict_input(path, [CheckpointModel(world.runs[0])], str(tmp_path / "out"), config(decoders=1))
    assert os.listdir(tmp_path / "out") == []
