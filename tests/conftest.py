"""Shared pytest fixtures: small real BSON files written with pymongo's bson module."""
import copy
import os
import shutil

import bson
import cv2
import numpy as np
import pytest

from data.recordio import MAGIC_BYTES as RECORDIO_MAGIC

REAL_DIR = os.environ.get("CDISCOUNT_REAL_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "real"))
REAL_TRAIN_EXAMPLE = os.path.join(REAL_DIR, "train_example.bson")
REAL_CATEGORY_NAMES = os.path.join(REAL_DIR, "category_names.csv")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (deselect with -m 'not slow')")


@pytest.fixture
def real_train_example(tmp_path):
    """A private copy of the official 82-product Kaggle sample (so that index caches and other
    outputs never land in ../shared/real); skips when that folder is absent."""
    if not os.path.exists(REAL_TRAIN_EXAMPLE):
        pytest.skip("official sample not available (../shared/real/train_example.bson)")
    return shutil.copy(REAL_TRAIN_EXAMPLE, tmp_path / "train_example.bson").as_posix()


@pytest.fixture
def real_category_names():
    if not os.path.exists(REAL_CATEGORY_NAMES):
        pytest.skip("official category_names.csv not available (../shared/real)")
    return REAL_CATEGORY_NAMES


def jpeg_bytes(seed, size=180):
    """A real 180x180 JPEG whose content depends on `seed`."""
    rng = np.random.RandomState(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.randint(0, 256, 3)
    cv2.circle(img, (int(rng.randint(20, 160)), int(rng.randint(20, 160))), 30, tuple(int(v) for v in rng.randint(0, 256, 3)), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def file_bytes(*paths):
    return [open(p, "rb").read() for p in paths]


def read_sequentially(rec_path):
    """[(label, id, id2, image)] of every record of `rec_path`, read by MXNet's sequential
    reader (without the `.idx`): what the project's RecordIO files are checked against."""
    import mxnet as mx     # only the tests that compare with MXNet need it
    reader = mx.recordio.MXRecordIO(str(rec_path), "r")
    out = []
    while (item := reader.read()) is not None:
        header, image = mx.recordio.unpack(item)
        out.append((header.label, header.id, header.id2, image))
    reader.close()
    return out


def write_bson(path, docs):
    """Write documents (dicts) as a Kaggle-style BSON file: a plain concatenation."""
    with open(path, "wb") as f:
        for doc in docs:
            f.write(bson.encode(doc))
    return path


def make_products(n, n_categories=5, test=False, first_id=0, seed=0, categories=None):
    """`n` products with 1-4 JPEGs each; ids ascending with gaps, like the Kaggle file."""
    rng = np.random.RandomState(seed)
    categories = categories or [1000000000 + 17 * c for c in range(n_categories)]
    docs, pid = [], first_id
    for i in range(n):
        doc = {"_id": pid}
        if not test:
            doc["category_id"] = categories[i % len(categories)]
        doc["imgs"] = [{"picture": jpeg_bytes(seed * 100003 + pid * 7 + k)} for k in range(1 + rng.randint(4))]
        docs.append(doc)
        pid += 1 + rng.randint(3)
    return docs


def with_magic_words(docs, seed=0):
    """Copies of `docs` whose pictures hold RecordIO's magic word at aligned and unaligned
    offsets, at their very end, and as their whole content."""
    docs = copy.deepcopy(docs)
    rng = np.random.RandomState(seed)
    for d, doc in enumerate(docs):
        for k, img in enumerate(doc["imgs"]):
            picture = bytearray(img["picture"])
            choice = (d + k) % 5
            if choice == 1:
                for _ in range(3):
                    at = 4 * rng.randint(len(picture) // 4 - 1)              # aligned: a split
                    picture[at:at + 4] = RECORDIO_MAGIC
            elif choice == 2:
                at = 4 * rng.randint(len(picture) // 4 - 1) + 1 + rng.randint(3)   # unaligned: none
                picture[at:at + 4] = RECORDIO_MAGIC
            elif choice == 3:
                picture = picture[:len(picture) & ~3] + RECORDIO_MAGIC + picture[:rng.randint(4)]   # near the end
            elif choice == 4 and d % 3 == 0:
                picture = bytearray(RECORDIO_MAGIC * (1 + rng.randint(6)))
            img["picture"] = bytes(picture)
    return docs


@pytest.fixture
def small_bson(tmp_path):
    """A 40-product train-style BSON file and its documents."""
    docs = make_products(40)
    return write_bson(str(tmp_path / "train.bson"), docs), docs
