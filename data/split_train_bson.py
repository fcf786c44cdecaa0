"""Product-level train/validation split of train.bson, exactly as the reference made it.

The reference's algorithm, reproduced step by step (REFERENCE.md, "Splits"):

1. collect every `_id` in file order into a list;
2. seed Python's `random` with the seed and `random.shuffle` the list;
3. validation = `random.sample(list, int(len(list) * ratio))`;
4. training = every other product; both sides keep the original file order.

A private `random.Random(seed)` gives the same stream as `random.seed(seed)` on the global
generator without touching it. `shuffle` and `sample` are Python 3's (`_randbelow`
based), so the split equals the reference's when the reference ran on Python 3.
DATASET_A uses seed 12648430 (0xC0FFEE), DATASET_B seed 1, both with ratio 0.05
(7,069,896 products -> 353,494 validation products).

The split is saved as `<name>.split.npz`: `train_ids` and `val_ids` (int64, file order)
and `meta` (JSON bytes: seed, ratio, and the size/mtime/product count of the BSON file it
was made from, checked by the stages that use it). The conversion reads the original file
through its offset index, so the per-side BSON copies of the reference
(`--bson-prefix DIR/A` writes `DIR/A_train.bson` and `DIR/A_val.bson`) are optional.

    python -m data.split_train_bson train.bson --seed 12648430 --out work/rec/A.split.npz
"""
import argparse
import contextlib
import logging
import os
import random

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_open, exclusive_output
from data.bson_index import BsonIndex
from data.cli import add_common_options, add_skip_bad_option, command, setup_logging
from data.npz_store import file_signature, load_versioned, save_npz

log = logging.getLogger(__name__)

SPLIT_VERSION = 1
SIDES = ("train", "val")
DATASET_SEEDS = {"A": 12648430, "B": 1}
DEFAULT_RATIO = 0.05


def validation_ids(product_ids, seed, ratio=DEFAULT_RATIO):
    """The validation product ids chosen by the reference's algorithm, in `random.sample` order."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be in [0, 1], not {ratio}")
    ids = [int(i) for i in product_ids]
    rng = random.Random(seed)
    rng.shuffle(ids)
    return rng.sample(ids, int(len(ids) * ratio))


def validation_mask(product_ids, seed, ratio=DEFAULT_RATIO):
    """Boolean mask over `product_ids` (file order): True for the validation products."""
    product_ids = np.asarray(product_ids, np.int64)
    if len(np.unique(product_ids)) != len(product_ids):
        raise ValueError("product ids are not unique: a product-level split needs unique ids")
    return np.isin(product_ids, np.asarray(validation_ids(product_ids, seed, ratio), np.int64))


class Split:
    """The product ids of each side of a split, in file order, with how they were made."""

    def __init__(self, train_ids, val_ids, meta):
        self.train_ids = np.asarray(train_ids, np.int64)
        self.val_ids = np.asarray(val_ids, np.int64)
        self.meta = meta

    @classmethod
    def of_index(cls, index, seed, ratio=DEFAULT_RATIO):
        """Split the products of a `BsonIndex` (file order)."""
        ids = index.product_ids
        is_val = validation_mask(ids, seed, ratio)
        meta = {"version": SPLIT_VERSION, "seed": int(seed), "ratio": float(ratio),
                "source": dict(file_signature(index.path), products=len(index)),
                "train_products": int((~is_val).sum()), "val_products": int(is_val.sum())}
        return cls(ids[~is_val], ids[is_val], meta)

    @property
    def seed(self):
        return self.meta["seed"]

    @property
    def ratio(self):
        return self.meta["ratio"]

    def ids(self, side):
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        return self.train_ids if side == "train" else self.val_ids

    def positions(self, index, side):
        """Ascending index positions of `side`'s products; the split must come from that file."""
        source = self.meta["source"]
        if source["size"] != os.path.getsize(index.path) or source["products"] != len(index):
            raise ValueError(
                f"split of {source['path']} ({source['products']} products, {source['size']} bytes) "
                f"does not belong to {index.path} ({len(index)} products, {os.path.getsize(index.path)} bytes)")
        return np.sort(index.positions_of(self.ids(side)))

    def save(self, path):
        return save_npz(path, self.meta, {"train_ids": self.train_ids, "val_ids": self.val_ids})

    @classmethod
    def load(cls, path):
        meta, arrays = load_versioned(path, SPLIT_VERSION, "split file (data.split_train_bson)")
        return cls(arrays["train_ids"], arrays["val_ids"], meta)


def write_side_bsons(index, split, prefix, progress=True):
    """Copy each side's documents, byte for byte and in file order, to `<prefix>_{train,val}.bson`."""
    is_val = np.zeros(len(index), bool)
    is_val[index.positions_of(split.val_ids)] = True
    paths = {side: f"{prefix}_{side}.bson" for side in SIDES}
    with contextlib.ExitStack() as stack:
        out = {side: stack.enter_context(atomic_open(path, "wb")) for side, path in paths.items()}
        bar = stack.enter_context(tqdm(total=int(index.records["length"].sum()), unit="B", unit_scale=True,
                                       desc="write side BSON files", disable=not progress))
        for pos, raw in index.iter_raw():
            out["val" if is_val[pos] else "train"].write(raw)
            bar.update(len(raw))
    return paths


@command("split_train_bson")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="split_train_bson", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bson", help="train.bson (indexed on first use, index cached beside it)")
    parser.add_argument("--out", required=True, help="split file to write, e.g. work/rec/A.split.npz")
    parser.add_argument("--seed", type=int, default=DATASET_SEEDS["A"],
                        help="random seed: 12648430 for DATASET_A (default), 1 for DATASET_B")
    parser.add_argument("--ratio", type=float, default=DEFAULT_RATIO, help="validation share (default 0.05)")
    parser.add_argument("--bson-prefix", help="also write PREFIX_train.bson and PREFIX_val.bson")
    add_skip_bad_option(parser, "split the good products of a file with bad documents")
    add_common_options(parser)
    args = parser.parse_args(argv)
    setup_logging()
    outputs = [args.out] + ([f"{args.bson_prefix}_{side}.bson" for side in SIDES] if args.bson_prefix else [])
    with contextlib.ExitStack() as locks:
        for path in outputs:
            locks.enter_context(exclusive_output(path))
        index = BsonIndex.load_or_build(args.bson, skip_bad=args.skip_bad, progress=args.progress)
        split = Split.of_index(index, args.seed, args.ratio)
        split.save(args.out)
        log.info("%s: seed %d, ratio %g: %d train / %d validation products -> %s", args.bson, args.seed, args.ratio,
                 len(split.train_ids), len(split.val_ids), args.out)
        if args.bson_prefix:
            for path in write_side_bsons(index, split, args.bson_prefix, args.progress).values():
                log.info("wrote %s", path)


if __name__ == "__main__":
    main()
