"""Products to predict, streamed in input order from a Kaggle BSON file or a `.rec`.

A product is its position in the input (`seq`, the row of every output array), its
Kaggle id, its class id (-1 when unknown, e.g. test data), its JPEG bytes and where it
sits in the file (byte offset of its BSON document, or number of its first record), so
that errors name file, place and product.

- BSON (`test.bson`, or a train BSON for validation): read through the offset index
  (`data.bson_index`), labels from `category_id` via `category_names.csv`. With
  `skip_bad`, damaged regions are skipped by the index and listed in `skipped`
  (`skipped_documents`); in an unlabelled input (test.bson) each product lost there whose
  `_id` is readable still gets a product, without pictures, at the region's place, so
  that the submission keeps its row (with the fallback vector, see predict.aggregate).
- RecordIO (`A_val.rec`, `test.rec` of `data.bson2rec`): one record per image,
  ``IRHeader(label=class_id or -1, id=product_id, id2=image_number)``; the images of a
  product must be consecutive (the validation and test sides keep BSON file order). A
  truncated or corrupt record, or fewer records than the `.idx` lists, is an error naming
  the file and the record. Read with `data.recordio` (no framework: a machine with only
  PyTorch predicts a `.rec` too).

An input without any product is an error: it would give an empty submission.
"""
import heapq
import itertools
import os
from dataclasses import dataclass

import numpy as np

from data.bson_index import NO_CATEGORY, BsonIndex
from data.errors import DataInputError
from data.recordio import IR_HEADER, RecordFileError, iter_records, record_paths


@dataclass
class Product:
    seq: int
    product_id: int
    label: int
    jpegs: list
    path: str
    offset: int = None    # byte offset of the BSON document
    record: int = None    # number of the product's first record in a .rec

    def error(self, reason):
        """A `DataInputError` about this product (naming file, offset or record, product)."""
        if self.record is not None:
            reason = f"record {self.record}: {reason}"
        return DataInputError(self.path, self.offset, self.product_id, reason)


def skipped_documents(index):
    """The damaged regions `index` skipped, each a problem dict of the index (`offset`,
    `end`, `reason`, `lost_product_ids`: the readable ids of the products lost there) with
    ``row``: whether rows stand for every product lost there. A duplicate `_id` keeps the
    row of its first document; in an unlabelled input (no label needed) every readable id
    gets one. A region where no `_id` can be read, or one of a labelled input that lost
    products, has none: its products are missing from the predictions."""
    kept = set(index.product_ids.tolist())
    return [dict(problem, row=bool(problem["lost_product_ids"]) and
                 (index.kind == "test" or kept.issuperset(problem["lost_product_ids"])))
            for problem in index.problems]


def unread_products(index, skipped):
    """``[(offset, product id)]`` of the products lost in damaged regions that still get a
    row (`skipped_documents`), in file order, each once."""
    kept = set(index.product_ids.tolist())
    out = []
    for region in skipped:
        if region["row"]:
            out += [(region["offset"], i) for i in region["lost_product_ids"] if i not in kept]
            kept.update(region["lost_product_ids"])
    return sorted(out, key=lambda item: item[0])


def _empty_input_error(path, skipped):
    note = f" ({len(skipped)} unreadable documents skipped)" if skipped else ""
    return DataInputError(path, None, None, f"no product to predict{note}: the input is empty")


class BsonSource:
    kind = "bson"

    def __init__(self, path, categories=None, skip_bad=False, progress=True):
        self.path = path
        self.index = BsonIndex.load_or_build(path, skip_bad=skip_bad, progress=progress)
        if self.index.kind == "train" and categories is None:
            raise ValueError(f"{path} holds category ids: give the category map (category_names.csv) for labels")
        self.categories = categories
        self.skipped = skipped_documents(self.index)
        self.unread = unread_products(self.index, self.skipped)
        self.total_products = len(self.index) + len(self.unread)
        self.total_images = int(self.index.n_images.sum(dtype=np.int64))
        if self.total_products == 0:
            raise _empty_input_error(path, self.skipped)

    def __iter__(self):
        """Products in file order: the indexed ones, and the unread ones that keep a row."""
        records = self.index.records
        read = ((int(records[pos]["offset"]), pos, raw) for pos, raw in self.index.iter_raw())
        unread = ((offset, None, product_id) for offset, product_id in self.unread)
        for seq, (offset, pos, item) in enumerate(heapq.merge(read, unread, key=lambda d: d[0])):
            if pos is None:
                yield Product(seq, item, -1, [], self.path, offset=offset)
                continue
            row = records[pos]
            category = int(row["category_id"])
            label = self.categories.class_of(category) if category != NO_CATEGORY else -1
            yield Product(seq, int(row["product_id"]), label, self.index.pictures(pos, item), self.path, offset=offset)


class RecSource:
    """Products of a `.rec` file read sequentially (the `.idx`, when present, gives the image count)."""
    kind = "rec"
    skipped = ()     # a .rec is read whole or not at all

    def __init__(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such .rec file")
        self.path = path
        self.idx_path = record_paths(path)[1]
        self.total_images = _count_lines(self.idx_path) if os.path.isfile(self.idx_path) else None
        self.total_products = None
        if os.path.getsize(path) == 0:
            raise _empty_input_error(path, ())

    def __iter__(self):
        yield from self._products(self._payloads())

    def _payloads(self):
        """The payload of every record in file order (`data.recordio.iter_records`); a
        located error for a broken record."""
        records = iter_records(self.path)
        for record in itertools.count():
            try:
                _, payload = next(records)
            except StopIteration:
                return
            except RecordFileError as e:
                raise DataInputError(self.path, None, None, f"record {record}: truncated or corrupt RecordIO record "
                                     f"({e.reason})") from None
            yield payload

    def _products(self, payloads):
        current, seq, records = None, 0, 0
        for record, item in enumerate(payloads):
            records = record + 1
            if len(item) < IR_HEADER.size:
                raise DataInputError(self.path, None, None, f"record {record}: too short for an image record header")
            flag, label, product_id, number = IR_HEADER.unpack_from(item)
            if flag != 0:
                raise DataInputError(self.path, None, product_id, f"record {record}: flag {flag}, not a "
                                     "single-label image record of data.bson2rec")
            if current is not None and product_id == current.product_id and number == len(current.jpegs):
                current.jpegs.append(item[IR_HEADER.size:])
                continue
            if number != 0:
                raise DataInputError(self.path, None, product_id,
                                     f"record {record}: image {number} does not follow image {number - 1} of its "
                                     "product: the images of a product must be consecutive records (validation/"
                                     "test .rec of data.bson2rec, not a shuffled training .rec)")
            if current is not None:
                yield current
                seq += 1
            current = Product(seq, int(product_id), int(label), [item[IR_HEADER.size:]], self.path, record=record)
        if self.total_images is not None and records != self.total_images:
            raise DataInputError(self.path, None, None, f"{records} records, but {self.idx_path} lists "
                                 f"{self.total_images}: the .rec is truncated or the .idx belongs to another file")
        if current is not None:
            yield current


def _count_lines(path):
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def open_source(path, categories=None, skip_bad=False, progress=True):
    """A product source for a `.bson` or `.rec` file."""
    if path.endswith(".rec"):
        return RecSource(path)
    if path.endswith(".bson"):
        return BsonSource(path, categories, skip_bad, progress)
    raise ValueError(f"{path}: input must be a .bson or a .rec file")
