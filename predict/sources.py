"""Products to predict, streamed in input order from a Kaggle BSON file or a `.rec`.

A product is its position in the input (`seq`, the row of every output array), its
Kaggle id, its class id (-1 when unknown, e.g. test data), its JPEG bytes and where it
sits in the file (byte offset of its BSON document, or number of its first record), so
that errors name file, place and product.

- BSON (`test.bson`, or a train BSON for validation): read through the offset index
  (`data.bson_index`), labels from `category_id` via `category_names.csv`.
- RecordIO (`A_val.rec`, `test.rec` of `data.bson2rec`): one record per image,
  ``IRHeader(label=class_id or -1, id=product_id, id2=image_number)``; the images of a
  product must be consecutive (the validation and test sides keep BSON file order).
"""
import itertools
import os
from dataclasses import dataclass

import numpy as np

from data.bson_index import NO_CATEGORY, BsonIndex
from data.errors import DataInputError
from data.recordio import IR_HEADER


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


class BsonSource:
    kind = "bson"

    def __init__(self, path, categories=None, skip_bad=False, progress=True):
        self.path = path
        self.index = BsonIndex.load_or_build(path, skip_bad=skip_bad, progress=progress)
        if self.index.kind == "train" and categories is None:
            raise ValueError(f"{path} holds category ids: give the category map (category_names.csv) for labels")
        self.categories = categories
        self.total_products = len(self.index)
        self.total_images = int(self.index.n_images.sum(dtype=np.int64))

    def __iter__(self):
        records = self.index.records
        for pos, raw in self.index.iter_raw():
            row = records[pos]
            category = int(row["category_id"])
            label = self.categories.class_of(category) if category != NO_CATEGORY else -1
            yield Product(pos, int(row["product_id"]), label, self.index.pictures(pos, raw), self.path,
                          offset=int(row["offset"]))


class RecSource:
    """Products of a `.rec` file read sequentially (the `.idx`, when present, gives the image count)."""
    kind = "rec"

    def __init__(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such .rec file")
        self.path = path
        idx = os.path.splitext(path)[0] + ".idx"
        self.total_images = _count_lines(idx) if os.path.isfile(idx) else None
        self.total_products = None

    def __iter__(self):
        import mxnet as mx
        reader = mx.recordio.MXRecordIO(self.path, "r")
        try:
            yield from self._products(reader)
        finally:
            reader.close()

    def _products(self, reader):
        current, seq = None, 0
        for record in itertools.count():
            item = reader.read()
            if item is None:
                break
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
