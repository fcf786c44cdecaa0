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
import contextlib
import dataclasses
import os
import tempfile

import mxnet as mx
import numpy as np


class DataFileError(RuntimeError):
    """A missing, unindexed or inconsistent ``.rec`` / ``.idx`` pair, or labels that do not fit."""


@dataclasses.dataclass(frozen=True)
class RecordFile:
    """An indexed RecordIO file that has been checked to be readable."""

    rec: str
    idx: str
    num_records: int


def index_path(rec_path):
    return os.path.splitext(rec_path)[0] + ".idx"


def _count_lines(path, block=1 << 24):
    count = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            count += chunk.count(b"\n")
    return count


def _parse_index_line(line, idx_path):
    try:
        key, offset = (int(v) for v in line.split(b"\t"))
    except ValueError:
        raise DataFileError("%s is not a RecordIO index (lines of 'key<TAB>offset'): %r" % (idx_path, line[:80])) from None
    return key, offset


def index_entries(idx_path, count):
    """(key, offset) of the first and last lines of an ``.idx`` and of about `count` lines
    spread evenly between them, found by seeking: the index of the full training set has
    12 M lines, which ``MXIndexedRecordIO`` would load into a dict."""
    size = os.path.getsize(idx_path)
    entries = {}
    with open(idx_path, "rb") as f:
        for position in np.linspace(0, size, count + 1, dtype=np.int64)[:-1]:
            f.seek(position)
            if position:
                f.readline()   # the rest of the line `position` fell into
            line = f.readline().strip()
            if line:
                key, offset = _parse_index_line(line, idx_path)
                entries[key] = offset
        f.seek(max(0, size - 4096))
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    key, offset = _parse_index_line(last, idx_path)
    entries[key] = offset
    return sorted(entries.items())


@contextlib.contextmanager
def records_at(rec_path, entries):
    """An ``MXIndexedRecordIO`` reading the records at `entries` (key, offset) of `rec_path`
    through a small temporary index of just those."""
    with tempfile.TemporaryDirectory() as folder:
        idx = os.path.join(folder, "subset.idx")
        with open(idx, "w") as f:
            f.writelines("%d\t%d\n" % entry for entry in entries)
        reader = mx.recordio.MXIndexedRecordIO(idx, rec_path, "r")
        try:
            yield reader
        finally:
            reader.close()


def open_record_file(rec_path, role="data"):
    """Check that `rec_path` and its `.idx` exist and agree; return a `RecordFile`.

    Agreement: every offset of the index (checked at the first, the last and 100 lines
    between) lies inside the ``.rec`` and the record there unpacks as an image record.
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
    num_records = _count_lines(idx)
    if num_records == 0:
        raise DataFileError("%s index %s is empty" % (role, idx))
    entries = index_entries(idx, 100)
    rec_size = os.path.getsize(rec_path)
    beyond = [offset for _, offset in entries if offset >= rec_size]
    if beyond:
        raise DataFileError("%s index %s points at offset %d but %s holds only %d bytes: the .idx belongs to "
                            "another .rec (or the .rec is truncated)" % (role, idx, max(beyond), rec_path, rec_size))
    try:
        with records_at(rec_path, entries) as reader:
            for key, _ in entries:
                header, _ = mx.recordio.unpack(reader.read_idx(key))
                if header.flag != 0:
                    raise DataFileError("%s record %d of %s has flag %d; expected single-label image records "
                                        "(flag 0) as written by data.bson2rec" % (role, key, rec_path, header.flag))
    except mx.base.MXNetError as err:
        raise DataFileError("%s file %s does not match its index %s: %s" % (role, rec_path, idx,
                                                                             str(err).splitlines()[0])) from None
    return RecordFile(rec_path, idx, num_records)


@dataclasses.dataclass(frozen=True)
class RecordHeaders:
    """Per-record header fields, in file order (= ``.idx`` key order)."""

    labels: np.ndarray        # int64 class ids (-1 for test records)
    product_ids: np.ndarray   # int64
    image_numbers: np.ndarray  # int64


def read_record_headers(record):
    """Read every record's header of `record` (a `RecordFile`) in one sequential pass."""
    labels = np.empty(record.num_records, np.int64)
    product_ids = np.empty(record.num_records, np.int64)
    image_numbers = np.empty(record.num_records, np.int64)
    reader = mx.recordio.MXRecordIO(record.rec, "r")
    try:
        for i in range(record.num_records):
            item = reader.read()
            if item is None:
                raise DataFileError("%s ends after %d records but its index lists %d"
                                    % (record.rec, i, record.num_records))
            header, _ = mx.recordio.unpack(item)
            labels[i], product_ids[i], image_numbers[i] = int(header.label), header.id, header.id2
        if reader.read() is not None:
            raise DataFileError("%s holds more records than its index %s lists (%d)"
                                % (record.rec, record.idx, record.num_records))
    finally:
        reader.close()
    return RecordHeaders(labels, product_ids, image_numbers)


def sample_labels(record, count=2000):
    """Labels of about `count` records spread evenly over the file."""
    entries = index_entries(record.idx, count)
    with records_at(record.rec, entries) as reader:
        return np.array([int(mx.recordio.unpack(reader.read_idx(key))[0].label) for key, _ in entries], np.int64)


def check_labels(labels, num_classes, source):
    """Raise `DataFileError` when a label does not fit a `num_classes`-way classifier."""
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataFileError("%s holds class ids %d..%d but the network has --num-classes %d outputs: "
                            "the class count disagrees with the data" % (source, low, high, num_classes))


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
