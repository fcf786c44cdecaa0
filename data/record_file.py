"""An indexed RecordIO file opened for reading, checked first: what training reads.

Records follow the bson2rec contract (docs/DESIGN.md): ``IRHeader(flag=0, label=class_id,
id=product_id, id2=image_number)`` around the JPEG bytes, with an ``.idx`` beside the
``.rec`` whose keys are 0..n-1 in file order, and the conversion's ``.report.json``
(``data.recordio.record_paths`` names the three). Every training backend reads its
``.rec`` through `open_record_file` (the checks below run before the first batch), the
headers through `read_record_headers` and the labels' check through `check_labels`;
nothing here needs a framework.
"""
import dataclasses
import json
import os

import numpy as np

from data import recordio
from data.errors import DataInputError
from data.jpeg import describe, jpeg_problems


class DataFileError(RuntimeError):
    """A missing, unindexed or inconsistent ``.rec`` / ``.idx`` pair, or labels that do not fit."""


class UndecodablePictureError(DataInputError):
    """A record whose picture cannot be decoded: the `.rec`, the record's offset, the product
    and, in the reason, the record number and the image number."""


@dataclasses.dataclass(frozen=True)
class RecordFile:
    """An indexed RecordIO file that has been checked to be readable.

    ``offsets``: where each record starts, from the ``.idx``; ``report``: the conversion's
    ``.report.json``, checked to describe this ``.rec`` and ``.idx`` (None when there is none).
    """

    rec: str
    idx: str
    offsets: np.ndarray
    report: dict = None

    @property
    def num_records(self):
        return len(self.offsets)


def open_record_file(rec_path, role="data"):
    """Check that `rec_path` and its `.idx` exist and agree; return a `RecordFile`.

    Agreement: the `.idx` is well formed (keys 0..n-1, ascending offsets), its last record
    ends where the `.rec` does (a truncated `.idx` would silently leave the rest of the file
    out of training), 100 records spread over the file are single-label image records, and
    the conversion report beside them, if any, describes them (then those records' frames
    are checked as every record's is where it is read: ``recordio.read_indexed_record``). The whole `.idx` is read (5 s
    for the 12 M records of the full training side); of the `.rec`, only those 101 records.
    """
    if not rec_path:
        raise DataFileError("no %s .rec file given" % role)
    if not os.path.isfile(rec_path):
        raise DataFileError("%s file %s does not exist (build the RecordIO files with "
                            "shell/bson2rec_trainval.sh, or pass --data-train / --data-val)" % (role, rec_path))
    try:
        _, idx, report_path = recordio.record_paths(rec_path)
    except ValueError as err:
        raise DataFileError("%s file %s" % (role, err)) from None
    if not os.path.isfile(idx):
        raise DataFileError("%s file %s has no index %s: training needs an indexed .rec (written by "
                            "data.bson2rec) for a true shuffle and for validation" % (role, rec_path, idx))
    offsets = recordio.read_idx(idx)
    if len(offsets) == 0:
        raise DataFileError("%s index %s is empty" % (role, idx))
    report = _checked_report(rec_path, idx, report_path, offsets)
    size = os.path.getsize(rec_path)
    if offsets[-1] >= size:
        raise DataFileError("%s index %s points at offset %d but %s holds only %d bytes: the .idx belongs to "
                            "another .rec (or the .rec is truncated)" % (role, idx, offsets[-1], rec_path, size))
    with open(rec_path, "rb") as f:
        for key in np.unique(np.linspace(0, len(offsets) - 1, 101).astype(np.int64)).tolist():
            # A report that describes the pair vouches for the .idx: a record that does not fit it was
            # damaged after the conversion (read_indexed_record's error), else the .idx is the likelier culprit.
            payload = recordio.read_indexed_record(f, offsets, key) if report is not None else \
                _read_listed_record(f, idx, offsets, key)[0]
            flag = recordio.IR_HEADER.unpack_from(payload)[0] if len(payload) >= recordio.IR_HEADER.size else None
            if flag != 0:
                raise DataFileError("%s record %d of %s is not a single-label image record (flag %s); expected "
                                    "the records data.bson2rec writes" % (role, key, rec_path, flag))
        _, end = _read_listed_record(f, idx, offsets, len(offsets) - 1)
    if end != size:
        raise DataFileError("%s index %s does not cover %s: %s" % (role, idx, rec_path,
                                                                   recordio.index_coverage_problem(len(offsets), end,
                                                                                                   size)))
    return RecordFile(rec_path, idx, offsets, report)


def _read_listed_record(f, idx, offsets, key):
    try:
        return recordio.read_record(f, int(offsets[key]))
    except recordio.RecordFileError as err:
        raise recordio.RecordFileError(err.path, err.offset, None, "record %d of %s: %s" % (key, idx, err.reason)) \
            from None


def _checked_report(rec_path, idx, path, offsets):
    """The conversion report beside `rec_path` (None if there is none), checked to describe
    this `.rec` and `.idx`: the records it counts and the size of the `.rec` it wrote."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        if not isinstance(report, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        raise DataFileError("%s is not a conversion report (%s): convert %s again" % (path, err, rec_path)) from None
    records, rec_bytes = report.get("records"), report.get("rec_bytes")
    if records != len(offsets) or rec_bytes != os.path.getsize(rec_path):
        raise DataFileError("%s lists %d records in %d bytes of %s, but %s says the conversion wrote %s records "
                            "in %s bytes: the .rec or its index is truncated or comes from another conversion; "
                            "convert again" % (idx, len(offsets), os.path.getsize(rec_path), rec_path, path,
                                               records, rec_bytes))
    return report


@dataclasses.dataclass(frozen=True)
class RecordHeaders:
    """Per-record header fields, in file order (= ``.idx`` key order)."""

    labels: np.ndarray        # int64 class ids (-1 for test records)
    product_ids: np.ndarray   # int64
    image_numbers: np.ndarray  # int64


def read_record_headers(record):
    """Read every record's header of `record` (a `RecordFile`) in one sequential pass, checking
    every record's frame (`recordio.read_headers`: 0.3 µs a record in the page cache) and
    that every label is a whole number (a class id, or a test side's -1)."""
    headers = recordio.read_headers(record.rec, record.offsets)
    labels = headers["label"]
    fractional = np.flatnonzero(labels != np.floor(labels))          # NaN too
    if len(fractional):
        i = int(fractional[0])
        raise label_error(record, i, labels[i], headers["id"][i], headers["id2"][i],
                          "which is not a whole number; %d of the %d records have such labels: the .rec was damaged "
                          "after its conversion (or not written by data.bson2rec); convert it again"
                          % (len(fractional), record.num_records))
    return RecordHeaders(labels.astype(np.int64), headers["id"].astype(np.int64), headers["id2"].astype(np.int64))


# Why a record holds a label its conversion report does not count.
CHANGED_LABELS = "the .rec was changed after its conversion report counted its labels; convert it again"


def label_problems(labels, num_classes):
    """Whether each of `labels` (float, as records hold them) is not a class id of a
    `num_classes`-way classifier (None: of any): below 0 (a test side's -1), `num_classes`
    or more, not a whole number (3.5 would train as class 3), or NaN."""
    labels = np.asarray(labels, np.float64)
    fits = (labels >= 0) & (labels == np.floor(labels))
    return ~(fits & (labels < num_classes)) if num_classes is not None else ~fits


def label_error(record, i, label, product_id, image_number, why):
    """The `DataInputError` of record `i` of `record`, whose `label` is wrong for the reason `why`."""
    return DataInputError(record.rec, int(record.offsets[i]), int(product_id),
                          "record %d (image %d) has label %s, %s" % (i, image_number, format(float(label), "g"), why))


def classes_reason(num_classes):
    """Why a label is not a class id of a `num_classes`-way classifier."""
    return "not a class id of the network's --num-classes %d outputs (0..%d)" % (num_classes, num_classes - 1)


def check_labels(record, num_classes, headers=None, logger=None):
    """Raise a `DataInputError` naming the first record of `record` whose label is not a class
    id of a `num_classes`-way classifier (a test side's -1, a dataset of more classes).

    Every label is checked: from the `class_histogram` of the conversion report (checked by
    `open_record_file`) when there is one, without reading the `.rec` (a label changed in
    the file after its conversion is then found where it is read: PyTorch's input workers
    check each one); else from `headers`, or from every record's header: a pass over the
    whole `.rec` (`read_record_headers`)."""
    histogram = (record.report or {}).get("class_histogram")
    vouched = histogram is not None and sum(histogram) == record.num_records and \
        np.flatnonzero(histogram).max(initial=-1) < num_classes
    if headers is None and vouched:
        return
    if headers is None:
        if logger is not None:
            logger.info("reading the label of every record of %s (%d records)", record.rec, record.num_records)
        headers = read_record_headers(record)
    bad = np.flatnonzero(label_problems(headers.labels, num_classes))
    if len(bad):
        i = int(bad[0])
        raise label_error(record, i, headers.labels[i], headers.product_ids[i], headers.image_numbers[i],
                          "%s; %d of the %d records have such labels: %s"
                          % (classes_reason(num_classes), len(bad), record.num_records,
                             CHANGED_LABELS if vouched else "the class count disagrees with the data"))


def undecodable_pictures(record):
    """(record number, why) of every picture of `record` that will not decode, in file
    order, by `data.jpeg`'s structural check: one pass over the `.rec` (1.0 s per 100,000
    records of 4 KB in the page cache on 2 cores; reading the file is the rest)."""
    found = []
    for first, buf, starts, lengths in recordio.read_payloads(record.rec, record.offsets):
        sizes = np.maximum(lengths - recordio.IR_HEADER.size, 0)            # the picture after the IRHeader
        problems = jpeg_problems(buf, starts + recordio.IR_HEADER.size, sizes)
        found += [(first + int(j), describe(int(problems[j]), int(sizes[j]))) for j in np.flatnonzero(problems)]
    return found
