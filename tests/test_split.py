"""Product-level train/validation split: the reference's exact algorithm, no leak, split files."""
import os
import random
import subprocess
import sys

import bson
import numpy as np
import pytest

from data.bson_index import BsonIndex
from data.split_train_bson import DATASET_SEEDS, Split, validation_ids, validation_mask
from helpers import make_products, write_bson


@pytest.fixture
def global_random_state():
    """Leave Python's global `random` as it was (the reference implementation below seeds it)."""
    state = random.getstate()
    yield
    random.setstate(state)


def reference_validation_set(ids, seed, ratio):
    """The reference's steps, written out literally on the global `random` module."""
    ids = list(ids)
    random.seed(seed)
    random.shuffle(ids)
    return set(random.sample(ids, int(len(ids) * ratio)))


def file_ids(path):
    with open(path, "rb") as f:
        return [doc["_id"] for doc in bson.decode_file_iter(f)]


def gapped_ids(n, seed):
    """Ascending product ids with gaps, like Kaggle's."""
    return np.cumsum(1 + np.random.RandomState(seed).randint(0, 3, n)).tolist()


@pytest.mark.parametrize("seed", [DATASET_SEEDS["A"], DATASET_SEEDS["B"], 2017])
@pytest.mark.parametrize("ratio", [0.05, 0.3])
def test_split_equals_the_reference_algorithm(seed, ratio, global_random_state):
    ids = gapped_ids(20_000, seed=seed % 1000)
    is_val = validation_mask(ids, seed, ratio)
    expected = reference_validation_set(ids, seed, ratio)
    assert set(np.asarray(ids)[is_val].tolist()) == expected
    assert is_val.sum() == int(len(ids) * ratio)


def test_official_sample_splits_like_the_reference(real_train_example, tmp_path, global_random_state):
    path = real_train_example
    ids = file_ids(path)
    for seed in DATASET_SEEDS.values():
        split = Split.of_index(BsonIndex.load_or_build(str(path)), seed)
        expected = reference_validation_set(ids, seed, 0.05)
        assert set(split.val_ids.tolist()) == expected and len(expected) == int(82 * 0.05)
        assert split.train_ids.tolist() == [i for i in ids if i not in expected]


def test_same_seed_same_split_other_seed_other_split(global_random_state):
    ids = gapped_ids(5_000, seed=1)
    random.seed(99)
    before = random.getstate()
    first, again = validation_ids(ids, 1), validation_ids(list(ids), 1)
    assert first == again
    assert random.getstate() == before, "the split must not disturb the global random generator"
    assert set(validation_ids(ids, 2)) != set(first)


def test_sides_are_disjoint_cover_every_product_and_keep_file_order(small_bson):
    path, docs = small_bson
    ids = [d["_id"] for d in docs]
    split = Split.of_index(BsonIndex.load_or_build(path), seed=3, ratio=0.25)
    train, val = split.train_ids.tolist(), split.val_ids.tolist()
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(ids)
    assert len(val) == int(len(ids) * 0.25)
    assert train == [i for i in ids if i in set(train)] and val == [i for i in ids if i in set(val)]


@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.5, 1.0])
def test_ratio_sets_the_validation_size(ratio):
    ids = gapped_ids(1_001, seed=4)
    assert validation_mask(ids, 1, ratio).sum() == int(1_001 * ratio)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="ratio"):
        validation_ids([1, 2, 3], 1, 1.5)
    with pytest.raises(ValueError, match="unique"):
        validation_mask([1, 2, 2], 1)


def test_split_file_round_trip_and_positions(small_bson, tmp_path):
    path, docs = small_bson
    index = BsonIndex.load_or_build(path)
    split = Split.of_index(index, seed=1, ratio=0.2)
    loaded = Split.load(split.save(str(tmp_path / "B.split.npz")))
    assert loaded.train_ids.tolist() == split.train_ids.tolist() and loaded.val_ids.tolist() == split.val_ids.tolist()
    assert (loaded.seed, loaded.ratio, loaded.meta["source"]["products"]) == (1, 0.2, len(docs))
    val_pos = loaded.positions(index, "val")
    assert index.product_ids[val_pos].tolist() == split.val_ids.tolist()
    assert np.all(np.diff(val_pos) > 0)

    other = BsonIndex.load_or_build(write_bson(str(tmp_path / "other.bson"), make_products(12, seed=5)))
    with pytest.raises(ValueError, match="does not belong"):
        loaded.positions(other, "train")


def test_cli_writes_the_split_and_the_side_files(small_bson, tmp_path):
    path, docs = small_bson
    out = tmp_path / "rec"
    subprocess.run([sys.executable, "-m", "data.split_train_bson", path, "--seed", "1", "--ratio", "0.25",
                    "--out", str(out / "B.split.npz"), "--bson-prefix", str(out / "B")], check=True,
                   capture_output=True)
    split = Split.load(str(out / "B.split.npz"))
    assert set(validation_ids([d["_id"] for d in docs], 1, 0.25)) == set(split.val_ids.tolist())
    with open(path, "rb") as f:
        raw = f.read()
    encoded = {d["_id"]: bson.encode(d) for d in docs}
    for side in ("train", "val"):
        with open(out / f"B_{side}.bson", "rb") as f:
            side_raw = f.read()
        assert side_raw == b"".join(encoded[i] for i in split.ids(side).tolist())
    assert os.path.getsize(out / "B_train.bson") + os.path.getsize(out / "B_val.bson") == len(raw)


def test_cli_help():
    result = subprocess.run([sys.executable, "-m", "data.split_train_bson", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--seed" in result.stdout and "12648430" in result.stdout
