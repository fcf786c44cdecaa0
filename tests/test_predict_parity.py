"""Training's evaluation and predict see the same inputs and score products the same way.

- The batches of training's validation iterator (MXNet's ``ImageRecordIter``, through
  train.mxnet_backend.record_iter) equal `data.images.network_input` of the decoded pictures,
  bit for bit, for pictures of the network's size and smaller ones; larger ones are
  centre-cropped by the iterator (the difference predict.preprocess documents).
- The product accuracy training logs for an epoch is predict's ``mean.none`` with
  ``--tta none`` on the same checkpoint and validation ``.rec``.
- Training's streamed `ProductAccuracy` is predict's ``mean`` combiner, exactly.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import synthetic_pictures, synthetic_products, write_pictures_rec
from data.products import ProductAccuracy, product_hits
from predict.combine import combine_images
from data.images import decode_rgb, network_input
from models.runs import Preprocessing
from data import record_file
from train.mxnet_backend import record_iter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 4
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def synthetic_side(prefix, num_products, seed, first_product_id=0):
    """A `.rec`/`.idx` pair of 32 x 32 synthetic pictures written with data.recordio's writer;
    returns (rec path, pictures, product ids)."""
    labels, pids, numbers = synthetic_products(num_products, NUM_CLASSES, seed, first_product_id)
    pictures = synthetic_pictures(labels, seed, NUM_CLASSES)
    return write_pictures_rec(prefix, labels, pids, numbers, pictures), pictures, pids


def iterator_images(rec, image_shape, mean, scale):
    """Every record of `rec` as training's validation iterator gives it (no padding)."""
    record = record_file.open_record_file(rec)
    batches = record_iter.image_iter(record, 8, image_shape, mean, scale, threads=1)
    return np.concatenate([b.data[0].asnumpy()[:8 - b.pad] for b in batches])


@pytest.mark.parametrize("size", [32, 40])
def test_training_iterator_gives_predicts_network_input(tmp_path, size):
    rec, pictures, _ = synthetic_side(str(tmp_path / "val"), 10, seed=1)
    preprocessing = Preprocessing((3, size, size), "RGB", (123.0, 117.0, 104.0), 0.0167, "imagenet")
    expected = network_input(preprocessing, np.stack([decode_rgb(p) for p in pictures]))
    got = iterator_images(rec, preprocessing.image_shape, preprocessing.mean, preprocessing.scale)
    np.testing.assert_array_equal(got, expected)


def test_training_iterator_crops_larger_pictures_where_predict_resizes(tmp_path):
    rec, pictures, _ = synthetic_side(str(tmp_path / "val"), 10, seed=2)
    preprocessing = Preprocessing((3, 24, 24), "RGB", (10.0, 20.0, 30.0), 0.5, "imagenet")
    rgb = np.stack([decode_rgb(p) for p in pictures])
    got = iterator_images(rec, preprocessing.image_shape, preprocessing.mean, preprocessing.scale)
    np.testing.assert_array_equal(got, network_input(preprocessing, rgb[:, 4:28, 4:28]))
    assert not np.array_equal(got, network_input(preprocessing, rgb))


def test_streamed_product_accuracy_is_the_mean_combiner():
    rng = np.random.RandomState(3)
    product_ids = np.repeat(np.arange(40), rng.randint(1, 5, 40))
    labels = rng.randint(0, 5, 40)[product_ids]
    probs = rng.dirichlet(np.ones(5) * 0.3, len(product_ids)).astype(np.float32)
    streamed = ProductAccuracy()
    for start in range(0, len(product_ids), 3):
        streamed.update(probs[start:start + 3], product_ids[start:start + 3], labels[start:start + 3])
    hits = [product_hits(combine_images(probs[product_ids == p], "mean"), labels[product_ids == p][0])
            for p in range(40)]
    assert streamed.result() == np.mean(hits) and streamed.correct == sum(hits)


def test_logged_validation_product_accuracy_is_predicts_mean_none(tmp_path):
    train, _, train_pids = synthetic_side(str(tmp_path / "A_train"), 120, seed=5)
    val, _, _ = synthetic_side(str(tmp_path / "A_val"), 40, seed=6, first_product_id=int(train_pids[-1]) + 1)
    run_dir, out = str(tmp_path / "run"), str(tmp_path / "preds")
    subprocess.run([sys.executable, os.path.join(ROOT, "train", "train.py"), "--network", "dpn_tiny",
                    "--data-train", train, "--data-val", val, "--num-classes", str(NUM_CLASSES),
                    "--image-shape", "3,32,32", "--batch-size", "16", "--lr", "0.003", "--num-epochs", "1",
                    "--model-dir", run_dir, "--no-progress"], env=ENV, check=True, capture_output=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "predict", "predict.py"), "--input", val,
                    "--models", run_dir, "--out", out, "--tta", "none", "--decoders", "0", "--batch-size", "7",
                    "--no-progress"], env=ENV, check=True, capture_output=True)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        logged = json.loads(f.readline())["val"]
    with open(os.path.join(out, "run", "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["model"]["image_shape"] == [3, 32, 32]
    assert manifest["product_accuracy"]["mean.none"] == pytest.approx(logged["product_accuracy"], abs=1e-6)
    assert manifest["image_accuracy"] == pytest.approx(logged["accuracy"], abs=1e-6)
