"""Shared pytest fixtures (the helpers they use are in helpers.py, importable by every test
module). Framework-free at import: the PyTorch suite (tests/torch) loads this file too, so
a fixture that needs MXNet imports it when it runs. It puts the checkout's root first on
``sys.path``: the suites run from a checkout without an install step (the GPU machines)."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.categories import CategoryMap  # noqa: E402
from helpers import REAL_CATEGORY_NAMES, REAL_TRAIN_EXAMPLE, make_products, write_bson  # noqa: E402


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


@pytest.fixture
def small_bson(tmp_path):
    """A 40-product train-style BSON file and its documents."""
    docs = make_products(40)
    return write_bson(str(tmp_path / "train.bson"), docs), docs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """predict_world's synthetic world (tiny trained runs), built once per session."""
    from predict_world import synthetic_world     # MXNet: only for the tests that use it
    return synthetic_world(str(tmp_path_factory.getbasetemp() / "predict-world"))


@pytest.fixture(scope="module")
def categories(world):
    return CategoryMap.from_csv(world.categories)
