"""MD5 dictionaries of the training images: image MD5 -> category counts, product hash -> counts.

The reference's two MD5 tricks (REFERENCE.md, "MD5 tricks") look test images and test
products up in the training data:

* image MD5 = `hashlib.md5(jpeg_bytes).digest()` (16 bytes) of the untouched JPEG bytes;
* product hash = the product's distinct image MD5s, sorted and joined. The reference joined
  hex strings with commas; here the sorted distinct 16-byte digests are concatenated and
  hashed once more with MD5, a 16-byte key that is equal exactly when those lists are.

Compute both with these functions so that every stage agrees:

    from data.md5_dict import Md5Dictionary, image_md5, product_hash

    md5s = [image_md5(jpeg) for jpeg in product_jpegs]      # 16-byte digests
    key = product_hash(md5s)                                 # 16 bytes

Looking up (vectorised over any number of keys: a list of 16-byte `bytes` or an
`(n, 16)` uint8 array):

    d = Md5Dictionary.load("work/rec/train.md5.npz")
    hits = d.images.lookup(md5s)         # or d.products.lookup(keys)
    hits.found            # (n,) bool
    hits.n_categories     # (n,) int: distinct categories of the key, 0 when not found
    hits.total            # (n,) int: training images (products) carrying the key
    hits.single_category()               # (n,) int64 category id when exactly one, else -1
    hits.counts_of(i)                    # {category_id: count} of query i, in first-seen order
    hits.dense(category_map)             # (n, classes) float32 counts in class-id columns
    hits.offsets, hits.categories, hits.counts   # the same counts as CSR arrays per query
    hits.first_seen                      # per CSR entry: 0 for the key's category seen first, ...
    hits.first_seen_order()              # entry permutation: each query's categories in that order

Counts are kept per Kaggle `category_id` (independent of the CSV row order);
`dense(CategoryMap)` turns them into class-id columns for the modes unique / majority /
l1 / l2 / softmax of the prediction stage (predict.md5_modes). The reference kept a
`collections.Counter` per MD5, filled in `train.bson` order, and its `majority` mode took
`Counter.most_common(1)[0]`: among tied counts, the category seen first in the file
(Python 3 `Counter`s keep insertion order). `first_seen` keeps that order, so `counts_of`
equals the reference's Counter, order included.

File format (`.md5.npz`, plain arrays, loads without pickle; version 2): for each table
`image` and `product`: `<t>_keys` (m, 16) uint8 sorted, `<t>_offsets` (m+1,) int64,
`<t>_categories` (k,) int64, `<t>_counts` (k,) int32 and `<t>_first_seen` (k,) int32
(CSR: key i owns entries offsets[i]:offsets[i+1], categories ascending; `first_seen` ranks
them by the position in the BSON file where each was first seen with the key), plus `meta`
(JSON bytes: source file, split side, totals, version). Files of version 1 (without
`first_seen`) are refused with a request to rebuild them.

Building: one parallel pass over the BSON computes every image's MD5 and every product's
hash, in index order; they are cached beside the file as `<bson>.image_md5.npz` (16 bytes per
image and per product: ~310 MB for train.bson), so the dictionaries of several splits, and
the `--unique-md5` conversion of DATASET_C, need no further pass. For validation
experiments, build the dictionary from the training side of the split only: one built
from the whole train.bson leaks the validation labels.

    python -m data.md5_dict train.bson --split work/rec/A.split.npz --side train --out work/rec/A_train.md5.npz
    python -m data.md5_dict train.bson --out work/rec/train.md5.npz          # all products, for test
"""
import argparse
import hashlib
import json
import logging
import os

import numpy as np
from tqdm import tqdm

from data.atomic import exclusive_output
from data.bson_index import BsonIndex
from data.bson_layout import NO_CATEGORY
from data.cli import add_common_options, add_skip_bad_option, add_workers_option, command, setup_logging
from data.npz_store import cached_or_built, file_signature, load_cached, load_versioned, save_npz
from data.parallel import ordered_map
from data.rows import image_rows
from data.split_train_bson import SIDES, Split

log = logging.getLogger(__name__)

DIGEST_SIZE = 16
DICTIONARY_VERSION = 2
DIGESTS_VERSION = 1
TABLES = ("image", "product")
DIGEST_CHUNK_BYTES = 256 * 1024 * 1024


def image_md5(jpeg):
    """16-byte MD5 digest of an image's bytes, exactly as stored in the BSON."""
    return hashlib.md5(jpeg).digest()


def product_hash(image_md5s):
    """16-byte key of a product: MD5 of its sorted distinct image MD5 digests."""
    return hashlib.md5(b"".join(sorted(set(bytes(m) for m in image_md5s)))).digest()


def as_keys(keys):
    """(n, 16) uint8 array from a list of 16-byte strings or an (n, 16) / (16,) array."""
    if isinstance(keys, np.ndarray):
        arr = np.ascontiguousarray(keys, np.uint8).reshape(-1, DIGEST_SIZE)
    else:
        keys = list(keys)
        if any(len(k) != DIGEST_SIZE for k in keys):
            raise ValueError("MD5 keys must be 16-byte digests")
        arr = np.frombuffer(b"".join(bytes(k) for k in keys), np.uint8).reshape(-1, DIGEST_SIZE)
    return arr


def _key_words(keys):
    """Two big-endian uint64 words per key: sorting by (high, low) sorts the bytes."""
    words = as_keys(keys).view(">u8")
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


def first_occurrences(keys):
    """Boolean mask over the rows of `keys`: True where a key is seen for the first time."""
    high, low = _key_words(keys)
    order = np.lexsort((low, high))    # stable: equal keys keep their row order
    high, low = high[order], low[order]
    first = np.ones(len(order), bool)
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    mask = np.zeros(len(order), bool)
    mask[order[first]] = True
    return mask


# --------------------------------------------------------------------------------------------
# Count tables
# --------------------------------------------------------------------------------------------
class CountTable:
    """Sorted 16-byte keys, each with the counts of the categories it was seen with (CSR),
    and the order in which those categories were first seen with it (`first_seen`)."""

    def __init__(self, keys, offsets, categories, counts, first_seen):
        self.keys = as_keys(keys)
        self.offsets = np.asarray(offsets, np.int64)
        self.categories = np.asarray(categories, np.int64)
        self.counts = np.asarray(counts, np.int32)
        self.first_seen = np.asarray(first_seen, np.int32)
        self._high, self._low = _key_words(self.keys)

    @classmethod
    def from_pairs(cls, keys, categories):
        """Count each (key, category) pair; one row per distinct key. The pairs come in
        file order, which `first_seen` records."""
        high, low = _key_words(keys)
        categories = np.asarray(categories, np.int64)
        order = np.lexsort((categories, low, high))
        high, low, categories = high[order], low[order], categories[order]
        n = len(order)
        new_key = np.ones(n, bool)
        new_key[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
        new_pair = new_key.copy()
        new_pair[1:] |= categories[1:] != categories[:-1]
        pair_starts = np.flatnonzero(new_pair)
        counts = np.diff(np.append(pair_starts, n))
        key_of_pair = np.cumsum(new_key)[pair_starts] - 1
        n_keys = int(new_key.sum())
        offsets = np.zeros(n_keys + 1, np.int64)
        np.cumsum(np.bincount(key_of_pair, minlength=n_keys), out=offsets[1:])
        # The sort is stable: order[pair_starts] is each pair's first row. Rank the pairs of
        # each key by it.
        by_first_row = np.lexsort((order[pair_starts], key_of_pair))
        first_seen = np.empty(len(pair_starts), np.int32)
        first_seen[by_first_row] = np.arange(len(pair_starts)) - offsets[key_of_pair[by_first_row]]
        return cls(as_keys(keys)[order[new_key]], offsets, categories[pair_starts], counts, first_seen)

    def __len__(self):
        return len(self.keys)

    @property
    def n_categories(self):
        """Distinct categories of every key (row)."""
        return np.diff(self.offsets)

    def find(self, keys):
        """Row of each key in the table, -1 when absent."""
        high, low = _key_words(keys)
        rows = np.searchsorted(self._high, high, side="left")
        # Keys sharing their high word (rare: a 64-bit prefix) sit next to each other,
        # ordered by their low word: step forward until the low word is reached.
        pending = np.flatnonzero(rows < len(self))
        while len(pending):
            r = rows[pending]
            behind = (self._high[r] == high[pending]) & (self._low[r] < low[pending])
            pending = pending[behind]
            rows[pending] += 1
            pending = pending[rows[pending] < len(self)]
        safe = np.minimum(rows, max(len(self) - 1, 0))
        hit = (rows < len(self)) & (self._high[safe] == high) & (self._low[safe] == low) if len(self) else \
            np.zeros(len(rows), bool)
        return np.where(hit, rows, -1)

    def lookup(self, keys):
        return CountLookup(self, self.find(keys))


class CountLookup:
    """The counts of a batch of looked-up keys (see the module docstring)."""

    def __init__(self, table, rows):
        self.table, self.rows = table, rows
        self.found = rows >= 0
        safe = np.where(self.found, rows, 0)
        starts = np.where(self.found, table.offsets[safe], 0)
        stops = np.where(self.found, table.offsets[safe + 1], 0)
        self.n_categories = stops - starts
        self.offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(self.n_categories, out=self.offsets[1:])
        # Table entry of every CSR entry of the queries: starts[q] + rank within the query.
        query_of_entry = np.repeat(np.arange(len(rows)), self.n_categories)
        entry = starts[query_of_entry] + np.arange(self.offsets[-1]) - self.offsets[query_of_entry]
        self.categories = table.categories[entry]
        self.counts = table.counts[entry]
        self.first_seen = table.first_seen[entry]
        self._query_of_entry = query_of_entry
        self.total = np.bincount(query_of_entry, weights=self.counts, minlength=len(rows)).astype(np.int64)

    def __len__(self):
        return len(self.rows)

    def single_category(self):
        """Category id of each query seen with exactly one category, -1 otherwise."""
        out = np.full(len(self), NO_CATEGORY, np.int64)
        one = self.n_categories == 1
        out[one] = self.categories[self.offsets[:-1][one]]
        return out

    def first_seen_order(self):
        """Permutation of the CSR entries that lists each query's categories in the order
        they were first seen with its key (offsets unchanged)."""
        return np.lexsort((self.first_seen, self._query_of_entry))

    def counts_of(self, i):
        """``{category_id: count}`` of query `i`, in first-seen order (the reference's Counter)."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        order = lo + np.argsort(self.first_seen[lo:hi])
        return dict(zip(self.categories[order].tolist(), self.counts[order].tolist()))

    def dense(self, category_map):
        """(n, len(category_map)) float32 counts; a row of zeros when not found."""
        out = np.zeros((len(self), len(category_map)), np.float32)
        out[self._query_of_entry, category_map.classes_of(self.categories)] = self.counts
        return out


# --------------------------------------------------------------------------------------------
# Per-image digests of a BSON file (one parallel pass, cached)
# --------------------------------------------------------------------------------------------
class ImageDigests:
    """MD5 of every image and hash of every product of an indexed BSON file, in index order.

    Image `j` of the product at position `p` is row `first_image[p] + j` of `image_md5`."""

    def __init__(self, image_md5, product_hash, first_image):
        self.image_md5, self.product_hash, self.first_image = image_md5, product_hash, first_image

    @staticmethod
    def _signature(index):
        sig = file_signature(index.path)
        return {"version": DIGESTS_VERSION, "size": sig["size"], "mtime_ns": sig["mtime_ns"],
                "index_sha1": hashlib.sha1(index.records.tobytes()).hexdigest()}

    @classmethod
    def compute(cls, index, workers=None, progress=True):
        first = index.first_image
        image_md5s = np.empty((first[-1], DIGEST_SIZE), np.uint8)
        product_hashes = np.empty((len(index), DIGEST_SIZE), np.uint8)
        workers = workers or os.cpu_count()
        total = int(index.records["length"].sum())
        n_chunks = max(workers * 4, total // DIGEST_CHUNK_BYTES + 1) if len(index) else 0
        chunks = [r for r in index.partition(n_chunks) if r[0] < r[1]] if n_chunks else []
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"md5 {os.path.basename(index.path)}",
                  disable=not progress) as bar:
            for start, stop, md5s, hashes in ordered_map(_digest_range, index, chunks, workers):
                image_md5s[first[start]:first[stop]] = np.frombuffer(md5s, np.uint8).reshape(-1, DIGEST_SIZE)
                product_hashes[start:stop] = np.frombuffer(hashes, np.uint8).reshape(-1, DIGEST_SIZE)
                bar.update(int(index.records["length"][start:stop].sum()))
        return cls(image_md5s, product_hashes, first)

    def save(self, path, index):
        save_npz(path, self._signature(index), {"image_md5": self.image_md5, "product_hash": self.product_hash})

    @classmethod
    def load_or_compute(cls, index, cache_path=None, workers=None, progress=True):
        """The cached digests of `index`'s file when they match it, else computed and cached.

        The cache defaults to `<bson>.image_md5.npz` beside the file; a folder that cannot be
        written only loses the cache. One process computes at a time: another that needs the
        digests meanwhile waits, then loads them (`data.atomic.build_once`)."""
        cache_path = cache_path or index.path + ".image_md5.npz"

        def cached():
            found = load_cached(cache_path, lambda meta: meta == cls._signature(index), "image MD5s")
            if found is None:
                return None
            log.info("using cached image MD5s %s", cache_path)
            return cls(found[1]["image_md5"], found[1]["product_hash"], index.first_image)

        return cached_or_built(cache_path, cached, lambda: cls.compute(index, workers, progress),
                               lambda digests: digests.save(cache_path, index), f"the image MD5s of {index.path}")


def _digest_range(index, task):
    """Worker: image MD5s and product hashes of positions [start, stop), as bytes."""
    start, stop = task
    md5s, hashes = bytearray(), bytearray()
    for pos, raw in index.iter_raw(start, stop):
        digests = [image_md5(p) for p in index.pictures(pos, raw)]
        md5s += b"".join(digests)
        hashes += product_hash(digests)
    return start, stop, bytes(md5s), bytes(hashes)


# --------------------------------------------------------------------------------------------
# The dictionary
# --------------------------------------------------------------------------------------------
class Md5Dictionary:
    """Image MD5 -> category counts and product hash -> category counts of a set of products."""

    def __init__(self, images, products, meta):
        self.images, self.products, self.meta = images, products, meta

    @classmethod
    def build(cls, index, digests, positions=None, meta=None):
        """Count the products at `positions` (default: all) of an indexed train BSON."""
        if index.kind != "train":
            raise ValueError(f"{index.path}: an MD5 dictionary needs category ids (a train BSON)")
        positions = np.arange(len(index)) if positions is None else np.asarray(positions, np.int64)
        categories = index.category_ids[positions]
        n_images = index.n_images[positions].astype(np.int64)
        images = CountTable.from_pairs(digests.image_md5[image_rows(digests.first_image, positions)],
                                       np.repeat(categories, n_images))
        products = CountTable.from_pairs(digests.product_hash[positions], categories)
        meta = dict(meta or {}, version=DICTIONARY_VERSION, source=file_signature(index.path),
                    products=len(positions), images=int(n_images.sum()))
        dictionary = cls(images, products, meta)
        dictionary.meta.update(dictionary.summary())
        return dictionary

    def summary(self):
        out = {}
        for name, table in (("image", self.images), ("product", self.products)):
            n_cat = table.n_categories
            out[f"distinct_{name}_keys"] = len(table)
            out[f"{name}_keys_single_category"] = int((n_cat == 1).sum())
            out[f"{name}_keys_conflicting"] = int((n_cat > 1).sum())
        return out

    def save(self, path):
        arrays = {}
        for name, table in (("image", self.images), ("product", self.products)):
            arrays.update({f"{name}_keys": table.keys, f"{name}_offsets": table.offsets,
                           f"{name}_categories": table.categories, f"{name}_counts": table.counts,
                           f"{name}_first_seen": table.first_seen})
        return save_npz(path, self.meta, arrays)

    @classmethod
    def load(cls, path):
        meta, z = load_versioned(path, DICTIONARY_VERSION, "MD5 dictionary",
                                 ": rebuild it with python -m data.md5_dict")
        images, products = (CountTable(*(z[f"{t}_{a}"] for a in ("keys", "offsets", "categories", "counts",
                                                                 "first_seen")))
                            for t in TABLES)
        return cls(images, products, meta)


def build_dictionary(bson_path, split_path=None, side="train", skip_bad=False, digests_path=None,
                     workers=None, progress=True):
    """The `Md5Dictionary` of a train BSON, or of one side of a split of it."""
    index = BsonIndex.load_or_build(bson_path, skip_bad=skip_bad, kind="train", progress=progress)
    digests = ImageDigests.load_or_compute(index, digests_path, workers, progress)
    if split_path is None:
        return Md5Dictionary.build(index, digests)
    if side == "val":
        log.warning("dictionary of a validation side: never use it to evaluate on that side")
    split = Split.load(split_path)
    meta = {"split": {"path": os.path.abspath(split_path), "side": side, "seed": split.seed, "ratio": split.ratio}}
    return Md5Dictionary.build(index, digests, split.positions(index, side), meta)


@command("md5_dict")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="md5_dict", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bson", help="a train BSON file (with category_id)")
    parser.add_argument("--out", required=True, help="dictionary file to write, e.g. work/rec/A_train.md5.npz")
    parser.add_argument("--split", help="split file (data.split_train_bson): count one side only")
    parser.add_argument("--side", choices=SIDES, default="train", help="side of --split to count (default train)")
    parser.add_argument("--digests", help="cache of the per-image MD5s (default: <bson>.image_md5.npz)")
    add_workers_option(parser)
    add_skip_bad_option(parser, "skip bad documents of the BSON file")
    add_common_options(parser)
    args = parser.parse_args(argv)
    setup_logging()
    with exclusive_output(args.out):
        dictionary = build_dictionary(args.bson, args.split, args.side, args.skip_bad, args.digests, args.workers,
                                      args.progress)
        dictionary.save(args.out)
    log.info("%s: %s", args.out, json.dumps(dictionary.summary()))


if __name__ == "__main__":
    main()
