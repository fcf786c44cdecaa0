"""Shared helpers of the prediction and ensemble tests (no tests here).

`synthetic_world(folder)`: a small synthetic Kaggle dataset (data.synth) whose train.bson is
split into a training and a validation BSON, an MD5 dictionary of the training side, and
two tiny networks (dpn_tiny, resnext_tiny) trained a few steps on the training side and
saved as training runs (train.checkpoint layout). Built once per folder and cached, so
every test module of a session shares it (fixtures `world` and `categories` of
conftest.py). `write_val_rec` writes a validation `.rec` of data.bson2rec's contract from
a BSON file.
"""
import collections
import functools
import os
import time

import cv2
import mxnet as mx
import numpy as np
from mxnet import gluon

from data.categories import CategoryMap
from data.md5_dict import build_dictionary
from data.synth import generate
from helpers import read_docs, write_bson, write_pictures_rec
from predict.checkpoints import CheckpointModel
from train.mxnet_backend.checkpoint import save_checkpoint
from models import mxnet_nets

MODEL_NAMES = ("dpn_tiny", "resnext_tiny")

World = collections.namedtuple("World", "folder train_bson val_bson test_bson categories md5_dict runs")


def training_arrays(docs, categories):
    """Every image of `docs` as NCHW float32 RGB 0-255, with its class id."""
    images, labels = [], []
    for doc in docs:
        for img in doc["imgs"]:
            bgr = cv2.imdecode(np.frombuffer(img["picture"], np.uint8), cv2.IMREAD_COLOR)
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).transpose(2, 0, 1))
            labels.append(categories.class_of(doc["category_id"]))
    return np.stack(images).astype(np.float32), np.array(labels, np.float32)


def write_val_rec(bson_path, categories, rec_path):
    """The validation .rec of data.bson2rec's contract: one record per image, file order,
    written with data.recordio's writer (helpers.write_pictures_rec)."""
    records = [(categories.class_of(doc["category_id"]), doc["_id"], number, img["picture"])
               for doc in read_docs(bson_path) for number, img in enumerate(doc["imgs"])]
    return write_pictures_rec(rec_path[:-4], *zip(*records))


def train_tiny_run(run_dir, model_name, images, labels, classes, steps=6, batch_size=32, seed=0):
    """A few Adam steps of `model_name`, saved as epoch 1 of the run folder `run_dir`."""
    mx.random.seed(seed)
    rng = np.random.RandomState(seed)
    net = mxnet_nets.get_model(model_name, classes=classes)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 2e-3})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        pick = rng.choice(len(images), batch_size, replace=False)
        with mx.autograd.record():
            out = loss(net(mx.nd.array(images[pick])), mx.nd.array(labels[pick]))
        out.backward()
        trainer.step(batch_size)
    os.makedirs(run_dir, exist_ok=True)
    save_checkpoint(run_dir, 1, net, trainer, {"model": model_name, "classes": classes, "mean": [0.0, 0.0, 0.0],
                                               "scale": 1.0, "dropout": 0.0})
    return run_dir


@functools.lru_cache(maxsize=None)
def synthetic_world(folder):
    generate(folder, train_products=240, test_products=60, categories=6, seed=5, progress=False)
    docs = read_docs(os.path.join(folder, "train.bson"))
    train_bson = write_bson(os.path.join(folder, "A_train.bson"), [d for i, d in enumerate(docs) if i % 4])
    val_bson = write_bson(os.path.join(folder, "A_val.bson"), [d for i, d in enumerate(docs) if i % 4 == 0])
    categories_csv = os.path.join(folder, "category_names.csv")
    categories = CategoryMap.from_csv(categories_csv)
    md5_dict = build_dictionary(train_bson, workers=1, progress=False).save(os.path.join(folder, "A_train.md5.npz"))
    images, labels = training_arrays(read_docs(train_bson), categories)
    runs = tuple(train_tiny_run(os.path.join(folder, "runs", name), name, images, labels, len(categories), seed=k)
                 for k, name in enumerate(MODEL_NAMES))
    return World(folder, train_bson, val_bson, os.path.join(folder, "test.bson"), categories_csv, md5_dict, runs)


class SlowNet:
    """A network that takes `delay` seconds longer per batch: keeps a run going long enough
    to kill one of its processes in the middle."""

    def __init__(self, net, delay):
        self.net, self.delay = net, delay

    def hybridize(self, **kwargs):
        self.net.hybridize(**kwargs)

    def __call__(self, x):
        time.sleep(self.delay)
        return self.net(x)


class SlowCheckpointModel(CheckpointModel):
    def __init__(self, path, delay):
        super().__init__(path)
        self.delay = delay

    def load(self, runner):
        return SlowNet(super().load(runner), self.delay)
