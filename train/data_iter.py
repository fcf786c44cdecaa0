"""Training and validation input: MXNet's C++ ``ImageRecordIter`` over indexed RecordIO files.

Records follow the bson2rec contract (docs/DESIGN.md): ``IRHeader(flag=0, label=class_id,
id=product_id, id2=image_number)`` around the JPEG bytes, with an ``.idx`` beside the
``.rec`` whose keys are 0..n-1 in file order.

Why a fresh iterator per epoch: ``ImageRecordIter.reset()`` reshuffles with a random
stream that continues from the previous epochs, and with ``round_batch`` it starts the
next epoch where the last batch's padding ended. A new iterator seeded with
``seed + epoch`` makes each epoch's order and augmentation a function of (seed, epoch)
only, so a resumed run sees exactly the data an uninterrupted one would have seen.

``round_batch=False`` is not used: in MXNet 1.9.1 it fills the last batch with stale
memory and still reports ``pad == 0``; with ``round_batch=True`` a fresh iterator's last
batch wraps around to the first records and ``pad`` counts them.
"""
import dataclasses
import json
import logging
import os

import numpy as np

from data import recordio
from data.errors import DataInputError
from data.jpeg import describe, jpeg_problems
from train.logs import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)


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


def index_path(rec_path):
    return os.path.splitext(rec_path)[0] + ".idx"


def report_path(rec_path):
    return os.path.splitext(rec_path)[0] + ".report.json"


def open_record_file(rec_path, role="data"):
    """Check that `rec_path` and its `.idx` exist and agree; return a `RecordFile`.

    Agreement: the `.idx` is well formed (keys 0..n-1, ascending offsets), its last record
    ends where the `.rec` does (a truncated `.idx` would silently leave the rest of the file
    out of training), 100 records spread over the file are single-label image records, and
    the conversion report beside them, if any, describes them. The whole `.idx` is read (5 s
    for the 12 M records of the full training side); of the `.rec`, only those 101 records.
    """
    if not rec_path:
        raise DataFileError("no %s .rec file given" % role)
    if not os.path.isfile(rec_path):
        raise DataFileError("%s file %s does not exist (build the RecordIO files with "
                            "shell/bson2rec_trainval.sh, or pass --data-train / --data-val)" % (role, rec_path))
    idx = index_path(rec_path)
    if not os.path.isfile(idx):
        raise DataFileError("%s file %s has no index %s: training needs an indexed .rec (written by "
                            "data.bson2rec) for a true shuffle and for validation" % (role, rec_path, idx))
    offsets = recordio.read_idx(idx)
    if len(offsets) == 0:
        raise DataFileError("%s index %s is empty" % (role, idx))
    report = _checked_report(rec_path, idx, offsets)
    size = os.path.getsize(rec_path)
    if offsets[-1] >= size:
        raise DataFileError("%s index %s points at offset %d but %s holds only %d bytes: the .idx belongs to "
                            "another .rec (or the .rec is truncated)" % (role, idx, offsets[-1], rec_path, size))
    with open(rec_path, "rb") as f:
        for key in np.unique(np.linspace(0, len(offsets) - 1, 101).astype(np.int64)).tolist():
            payload, _ = _read_listed_record(f, idx, offsets, key)
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


def _checked_report(rec_path, idx, offsets):
    """The conversion report beside `rec_path` (None if there is none), checked to describe
    this `.rec` and `.idx`: the records it counts and the size of the `.rec` it wrote."""
    path = report_path(rec_path)
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
    that the `.idx` lists every record of the `.rec` (`recordio.read_headers`)."""
    headers = recordio.read_headers(record.rec, record.offsets)
    return RecordHeaders(headers["label"].astype(np.int64), headers["id"].astype(np.int64),
                         headers["id2"].astype(np.int64))


def check_labels(record, num_classes, headers=None):
    """Raise a `DataInputError` naming the first record of `record` whose label is not a class
    id of a `num_classes`-way classifier (a test side's -1, a dataset of more classes).

    Every label is checked: from the `class_histogram` of the conversion report (checked by
    `open_record_file`) when there is one, without reading the `.rec`; else from `headers`,
    or from every record's header: a pass over the whole `.rec` (0.64 s per 100,000 records
    of 4 KB in the page cache on 2 cores, so about 80 s of CPU and a read of the 55 GB for
    the full training side)."""
    histogram = (record.report or {}).get("class_histogram")
    if headers is None and histogram is not None:
        used = np.flatnonzero(histogram)
        if sum(histogram) == record.num_records and (not len(used) or used[-1] < num_classes):
            return
    if headers is None:
        log.info("reading the label of every record of %s (%d records)", record.rec, record.num_records)
        headers = read_record_headers(record)
    bad = np.flatnonzero((headers.labels < 0) | (headers.labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise DataInputError(record.rec, int(record.offsets[i]), int(headers.product_ids[i]),
                             "record %d (image %d) has label %d, not a class id of the network's --num-classes %d "
                             "outputs (0..%d); %d of the %d records have such labels: the class count disagrees "
                             "with the data" % (i, headers.image_numbers[i], headers.labels[i], num_classes,
                                                num_classes - 1, len(bad), record.num_records))


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


def mxnet_message(err):
    """The line of an MXNetError that says what went wrong (its first line is "Traceback ...")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1].replace("MXNetError: ", "") if lines else type(err).__name__


def located_errors(record, make_batches):
    """The batches of the iterator over `record` that `make_batches()` creates (MXNet's reads
    its first batch at once); an MXNet error reading them (a picture it cannot decode stops it
    with ``!ssize.empty() in function 'resize'``) becomes an error naming the file, and the
    record, product and image when a picture will not decode."""
    import mxnet as mx   # MXNet's iterators only: the rest of this module loads no framework
    try:
        yield from make_batches()
    except mx.base.MXNetError as err:
        raise _reading_error(record, mxnet_message(err)) from None


def _reading_error(record, message):
    log.error("reading %s failed (%s): looking for pictures that will not decode", record.rec, message)
    bad = undecodable_pictures(record)
    if not bad:
        return DataFileError("reading %s failed: %s" % (record.rec, message))
    i, problem = bad[0]
    with open(record.rec, "rb") as f:
        _, _, product_id, image_number = recordio.IR_HEADER.unpack_from(
            recordio.read_record(f, int(record.offsets[i]))[0])
    return UndecodablePictureError(
        record.rec, int(record.offsets[i]), product_id,
        "record %d, image %d %s (MXNet: %s); %d picture(s) of the file will not decode: convert it again with "
        "data.bson2rec, which checks every picture (--skip-bad leaves them out)"
        % (i, image_number, problem, message, len(bad)))


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training augmentations of ``ImageRecordIter`` (the reference used random mirror only).

    ``resize``: shorter edge resized first (-1: off); ``random_crop`` with
    ``min_scale``/``max_scale``: random scale of the image, then a random crop of the
    input size; ``random_h/s/l``: HSL jitter amplitudes as in the reference's ablation (20).
    """

    random_mirror: bool = True
    random_crop: bool = False
    min_scale: float = 1.0
    max_scale: float = 1.0
    random_h: int = 0
    random_s: int = 0
    random_l: int = 0
    resize: int = -1

    def iter_kwargs(self):
        return dict(rand_mirror=self.random_mirror, rand_crop=self.random_crop,
                    min_random_scale=self.min_scale, max_random_scale=self.max_scale,
                    random_h=self.random_h, random_s=self.random_s, random_l=self.random_l, resize=self.resize)


NO_AUGMENTATION = Augmentation(random_mirror=False)


def image_iter(record, batch_size, image_shape, mean, scale, *, shuffle=False, seed=0,
               augmentation=NO_AUGMENTATION, num_parts=1, part_index=0, threads=4):
    """An ``ImageRecordIter`` yielding float32 NCHW RGB batches ``(pixel - mean) * scale``.

    It keeps MXNet's default ``ctx='gpu'`` implementation also on CPUs: it decodes ahead in
    a thread and reuses a batch's memory only after the engine says every operation
    reading it is done. The ``ctx='cpu'`` one decodes each batch into the same arrays
    without telling the engine, so the asynchronous forward pass of the previous batch
    reads overwritten images (tests/test_train_units.py shows it).

    With ``seed_aug`` MXNet reseeds the augmentation of the record at batch position i
    with ``seed_aug + i``: `augmentation_seed` spaces the seeds of different epochs apart.
    """
    import mxnet as mx   # lazily: the record files and their checks need no framework
    return mx.io.ImageRecordIter(
        path_imgrec=record.rec, path_imgidx=record.idx, data_shape=tuple(image_shape), batch_size=batch_size,
        shuffle=shuffle, seed=seed, seed_aug=augmentation_seed(seed), num_parts=num_parts, part_index=part_index,
        preprocess_threads=threads, mean_r=mean[0], mean_g=mean[1], mean_b=mean[2], scale=scale,
        round_batch=True, verbose=False, **augmentation.iter_kwargs())


def train_epoch_seed(seed, epoch):
    """Seed of epoch `epoch`'s shuffle and augmentation (see the module docstring)."""
    return seed * 1000003 + epoch


def augmentation_seed(seed):
    """``seed_aug`` of an iterator seeded `seed`: 65537 apart, more than any batch size."""
    return seed * 65537 % 2 ** 31


def batches_per_epoch(num_records, batch_size, num_parts=1, epoch_size=0, grad_accum=1):
    """Batches each of `num_parts` workers reads in one epoch.

    One epoch is one pass over the smallest shard (``num_records // num_parts``), or
    ``epoch_size`` images in all when that is set and smaller: the first
    ``epoch_size // num_parts`` images of each worker's fresh shuffle. The count is
    rounded down to whole optimizer steps of ``grad_accum`` batches, so every worker of a
    distributed run makes the same number of steps and a partial batch is never used.
    """
    images = num_records // num_parts
    if epoch_size:
        images = min(images, epoch_size // num_parts)
    steps = images // (batch_size * grad_accum)
    if steps == 0:
        raise DataFileError("an epoch of %d images per worker is smaller than one optimizer step of %d x %d "
                            "images: lower --batch-size or --grad-accum" % (images, grad_accum, batch_size))
    return steps * grad_accum
