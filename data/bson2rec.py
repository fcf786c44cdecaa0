"""BSON (+ split side) -> indexed MXNet RecordIO: one record per image, JPEG bytes untouched.

Every kept image of every selected product becomes one record
`mx.recordio.pack(IRHeader(flag=0, label=class_id, id=product_id, id2=image_number), jpeg)`
where `image_number` is the image's 0-based position in the product's `imgs` list and the
label is the class id of `category_names.csv` (-1.0 for test products). Next to
`NAME.rec` go MXNet's `NAME.idx` (`key\\toffset`, keys 0..n-1 in record order) and
`NAME.report.json` (products, images, filtered and skipped items with reasons, class
histogram). `mx.io.ImageRecordIter(path_imgrec=..., path_imgidx=...)`,
`mx.recordio.MXIndexedRecordIO` and `mx.gluon.data.vision.ImageRecordDataset` read them.

Selection and filters, all decided in the BSON file order of the side (so they do not
depend on the record order):
  --split S --side train|val   only that side's products (default: the whole file);
  --unique-md5                 keep only the first occurrence of each image MD5 (DATASET_C);
  --single-label-md5 DICT      keep only images whose MD5 has at most one category in DICT
                               (an `.md5.npz` of data.md5_dict; unseen MD5s are kept);
  --max-per-category N         keep the first N images of each category.

Record order: products in file order, or with `--shuffle` (the default for a labelled side
that is not validation) in a seeded permutation of the products
(`numpy.random.RandomState(seed).permutation`, seed 0xC0FFEE); the images of a product
stay next to each other, in `imgs` order. Readers without the `.idx` (which only shuffle
within chunks) thus still see mixed categories; with the `.idx`, ImageRecordIter shuffles
globally anyway. Validation and test sides keep file order for streaming evaluation.

How it runs: the record order is cut into parts of about `--part-mb` MB of BSON input. Worker
processes (fork, `--workers`, default all cores) convert parts independently, 8 MB of
documents at a time: one `os.pread` per run of products that are consecutive in the file
(a whole batch in file order, one product per read when shuffled; unless sampled reads
find them cached, the next batch's documents are announced to the kernel first, so that
their disk reads overlap with the conversion). The pictures of documents with Kaggle's layout are located in the read
buffer without decoding (`bson_index.locate_pictures`, vectorised, as strict as pymongo);
any other document is decoded with pymongo. Records are assembled in memory with numpy
headers, the JPEG bytes copied once, and one scan for RecordIO's magic word
(`ImageRecordWriter.write_many`). The records go with `os.pwrite` to their place in
`merged.rec`, in a hidden `.NAME.parts/` folder, as soon as every earlier part's size is
known (the workers share the sizes; the first part is half as large, so that two workers
finish half a part apart and each learns its place while converting); until then they
wait in memory, and if the part is finished first, they go to `part-NNNNN.rec`, which the
parent copies into place (`os.copy_file_range`) and deletes. The part's record offsets
and counts go to `part-NNNNN.npz`. Memory is bounded: a worker holds an 8 MB read buffer
and the records not yet placed (a read batch's worth, or at most its part: about
`--part-mb` MB); the parent holds per-product tables (the offset index and
the plan: ~60 bytes a product, ~1 byte an image; with `--unique-md5` or
`--single-label-md5` also the 16-byte MD5s of the images). The parent then writes the
`.idx` and the report and renames the three into place. The parts depend only on the
inputs and options, never on the number of workers, so the output is byte-identical for
any `--workers`; a run killed at any point resumes from the parts on disk (a part with
its `.npz` is done; any other is converted again and rewritten at the same place) and
produces the same files. A finished output whose report matches the inputs and options
is left alone (`--force` converts again).

The report (`NAME.report.json`): `products` and `images` (selected, skipped as bad,
filtered by reason, written), `records`, `rec_bytes`, `skipped` (bad products and images of
this output, each with path, offset, product_id and reason), `index_problems` (documents of
the BSON file that indexing skipped with `--skip-bad`: they belong to no side),
`class_histogram` (records per class id, train only), `inputs` and their `fingerprint`.
It holds no timings, so identical runs give identical files.

Bad input (truncated or corrupt BSON, a product without images, a train product without
category, a duplicate `_id`, a category missing from the CSV, and with `--verify-jpeg` an
image that OpenCV cannot decode) stops the conversion with an error naming file, offset and
product; with `--skip-bad` it is left out and listed in the report.

    python -m data.bson2rec train.bson --categories category_names.csv \\
        --split work/rec/A.split.npz --side train --out work/rec/A_train.rec
    python -m data.bson2rec test.bson --out work/rec/test.rec
"""
import argparse
import collections
import dataclasses
import glob
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_open, atomic_path, write_json
from data.bson_index import BsonIndex, locate_pictures
from data.categories import CategoryMap, UnknownCategoryError
from data.errors import DataInputError
from data.md5_dict import ImageDigests, Md5Dictionary, first_image_rows, first_occurrences, image_rows
from data.parallel import ordered_map
from data.recordio import ImageRecordWriter, MemoryFile, new_buffer, release_buffers, write_idx
from data.split_train_bson import SIDES, Split, file_signature

log = logging.getLogger(__name__)

CONVERTER_VERSION = 2          # 2: parts placed in merged.rec by the workers
DEFAULT_SEED = 0xC0FFEE
DEFAULT_PART_MB = 32
TEST_LABEL = -1.0
READ_BATCH = 8 << 20               # bytes of BSON documents read and converted at a time
COPY_CHUNK = 1 << 30


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """What to convert and how; every field except `workers` and `force` defines the output."""
    categories: str = None          # category_names.csv: required for a train BSON
    split: str = None               # split file of data.split_train_bson, with `side`
    side: str = None
    unique_md5: bool = False
    single_label_md5: str = None    # an Md5Dictionary file
    max_per_category: int = None
    shuffle: bool = None            # None: shuffle a labelled side that is not validation
    seed: int = DEFAULT_SEED
    verify_jpeg: bool = False
    skip_bad: bool = False
    part_mb: float = DEFAULT_PART_MB
    digests: str = None             # cache of per-image MD5s (default <bson>.image_md5.npz)
    workers: int = None             # default: all cores
    force: bool = False


def output_paths(rec_path):
    """(rec, idx, report) paths of an output named by its `.rec` path."""
    stem = rec_path[:-4] if rec_path.endswith(".rec") else rec_path
    return stem + ".rec", stem + ".idx", stem + ".report.json"


# --------------------------------------------------------------------------------------------
# Planning: which images, in which order, in which parts (parent process, pure numpy)
# --------------------------------------------------------------------------------------------
def class_labels(index, positions, category_map, skip_bad, skipped):
    """(kept positions, float32 labels): class ids of a train side, -1 for a test file.

    A category id missing from the CSV raises `DataInputError`, or with `skip_bad` drops the
    product and appends the problem to `skipped`."""
    if index.kind == "test":
        return positions, np.full(len(positions), TEST_LABEL, np.float32)
    categories = index.category_ids[positions]
    while True:   # one round per distinct unknown category (normally none)
        try:
            return positions, category_map.classes_of(categories).astype(np.float32)
        except UnknownCategoryError as unknown:
            bad = categories == unknown.category_id
            for pos in positions[bad][:None if skip_bad else 1].tolist():
                offset, _, product_id = index.records.item(pos)[:3]
                err = DataInputError(index.path, offset, product_id,
                                     f"category_id {unknown.category_id} is not in {category_map.path}")
                if not skip_bad:
                    raise err from None
                log.warning("skipping: %s", err)
                skipped.append(err.as_dict())
            positions, categories = positions[~bad], categories[~bad]


def image_filter(index, positions, labels, options, digests, filtered):
    """Per-image keep mask over the images of `positions` (file order), or None to keep all.

    `filtered` (a Counter) receives how many images each filter removed."""
    if not (options.unique_md5 or options.single_label_md5 or options.max_per_category is not None):
        return None
    first = first_image_rows(index)
    rows = image_rows(first, positions)
    keep = np.ones(len(rows), bool)
    if options.unique_md5:
        keep = first_occurrences(digests.image_md5[rows])
        filtered["duplicate_md5"] += int((~keep).sum())
    if options.single_label_md5:
        dictionary = Md5Dictionary.load(options.single_label_md5)
        single = dictionary.images.lookup(digests.image_md5[rows]).n_categories <= 1
        filtered["multi_label_md5"] += int((keep & ~single).sum())
        keep &= single
    if options.max_per_category is not None:
        image_labels = np.repeat(labels, index.n_images[positions].astype(np.int64))
        kept = np.flatnonzero(keep)
        by_label = kept[np.argsort(image_labels[kept], kind="stable")]
        sorted_labels = image_labels[by_label]
        group_start = np.searchsorted(sorted_labels, sorted_labels, side="left")
        over_cap = by_label[np.arange(len(by_label)) - group_start >= options.max_per_category]
        keep[over_cap] = False
        filtered["category_cap"] += len(over_cap)
    return keep if not keep.all() else None


def plan_parts(lengths, part_bytes, stagger=False):
    """Cut a sequence of document lengths into consecutive (start, stop) parts of ~part_bytes.

    With `stagger` (and at least two parts' worth), the first and last parts are half as large:
    workers that start together then finish their parts about half a part apart, so that each
    part's place in the output is known while it is being converted (see `_Placement`)."""
    ends = np.cumsum(lengths, dtype=np.int64)
    if not len(ends):
        return []
    n_parts = max(1, int(-(-ends[-1] // part_bytes)))
    grid = np.arange(n_parts) + 0.5 if stagger and n_parts > 1 else np.arange(1, n_parts)
    cuts = np.searchsorted(ends, grid * ends[-1] / n_parts, side="left") + 1
    cuts = np.unique(np.concatenate([[0], np.minimum(cuts, len(ends)), [len(ends)]]))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


@dataclasses.dataclass
class Job:
    """Everything a worker needs to convert a part (shared with the workers by fork)."""
    index: BsonIndex
    parts_dir: str
    products: np.ndarray        # index positions, in record order
    labels: np.ndarray          # float32 label per product, record order
    keep: np.ndarray            # per-image keep flags in record order, or None
    keep_first: np.ndarray      # images of products[i] are keep[keep_first[i]:keep_first[i+1]]
    parts: list                 # (start, stop) ranges of `products`
    part_bytes: np.ndarray      # BSON bytes of each part
    verify_jpeg: bool
    skip_bad: bool
    # Output bytes of each part, -1 until known: shared memory written by the workers, so that
    # a worker knows where its part goes in `merged.rec` once every earlier part is converted.
    sizes: object = None

    def part_path(self, part, suffix):
        return os.path.join(self.parts_dir, f"part-{part:05d}{suffix}")

    @property
    def merged_path(self):
        return os.path.join(self.parts_dir, "merged.rec")

    def part_offset(self, part):
        """Where part `part` starts in `merged.rec`, or None while an earlier part's size is unknown."""
        earlier = np.frombuffer(self.sizes, np.int64, count=part)
        return int(earlier.sum()) if (earlier >= 0).all() else None


def _jpeg_decodes(jpeg):
    import cv2
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None


def read_batches(lengths, batch_bytes=READ_BATCH):
    """Cut consecutive documents of `lengths` bytes into (start, stop) batches of at most
    `batch_bytes` (a larger document is a batch of its own)."""
    ends = np.cumsum(lengths, dtype=np.int64)
    batches, start = [], 0
    while start < len(ends):
        before = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, before + batch_bytes, side="right")), start + 1)
        batches.append((start, stop))
        start = stop
    return batches


_read_buffers = [new_buffer(0)]


def _read_buffer(size):
    """A buffer of at least READ_BATCH and `size` bytes, reused by the parts a process converts."""
    if len(_read_buffers[0]) < max(size, READ_BATCH):
        _read_buffers[0] = new_buffer(max(size, READ_BATCH))
    return _read_buffers[0]


class _PartWriter:
    """Converts the products of one part, a read batch at a time, into records written to `f`."""

    def __init__(self, job, start, stop, f, after_batch=None):
        self.job, self.index, self.after_batch = job, job.index, after_batch
        self.positions = job.products[start:stop]
        self.rows = self.index.records[self.positions]
        self.labels = job.labels[start:stop]
        self.keep = job.keep[job.keep_first[start]:job.keep_first[stop]] if job.keep is not None else None
        self.keep_first = job.keep_first[start:stop + 1] - job.keep_first[start]
        self.writer = ImageRecordWriter(f)
        self.offsets, self.record_labels, self.skipped = [], [], []
        self.products = 0           # products with at least one record written

    def run(self):
        lengths = self.rows["length"].astype(np.int64)
        batches = read_batches(lengths)
        buffer = _read_buffer(int(lengths.max()) if len(lengths) else 0)
        for k, (a, b) in enumerate(batches):
            # Unless they look cached, announce the documents of the next batch (and at first
            # of this one) to the kernel before reading this one: their reads then overlap with
            # converting this batch, and shuffled ones keep many disk reads in flight.
            for c, d in batches[k if k == 0 else k + 1:k + 2]:
                if not self.index.cached(self.positions[c:d]):
                    self.index.prefetch(self.positions[c:d])
            try:
                starts = self.index.read_into(self.positions[a:b], buffer)
            except DataInputError:      # the file is shorter than its index: locate it product by product
                self._write_products_slowly(a, b, None, None)
            else:
                self._write_batch(a, b, buffer, starts)
            if self.after_batch is not None:
                self.after_batch()

    def _write_batch(self, a, b, buffer, starts):
        """Write products a..b-1 of the part, read into `buffer` at `starts`."""
        rows = self.rows[a:b]
        ok, first, picture_starts, picture_lengths = locate_pictures(
            buffer, starts, rows["length"], rows["product_id"], rows["n_images"], rows["category_id"])
        # Runs of products with the Kaggle layout go out as one batch of records; any other
        # product (another layout, or corrupt) is decoded on its own.
        bounds = [0, *(np.flatnonzero(ok[1:] != ok[:-1]) + 1).tolist(), len(ok)]
        for i, j in zip(bounds[:-1], bounds[1:]):
            if ok[i]:
                self._write_located(a, i, j, buffer, first, picture_starts, picture_lengths)
            else:
                self._write_products_slowly(a + i, a + j, buffer, starts[i:j])

    def _write_located(self, a, i, j, buffer, first, picture_starts, picture_lengths):
        """Write products a+i..a+j-1 of the part, whose pictures `locate_pictures` found."""
        n_images = np.diff(first[i:j + 1])
        product = np.repeat(np.arange(i, j), n_images)                  # batch row of each image
        rows = slice(first[i], first[j])
        number = np.arange(first[i], first[j]) - first[product]
        part_rows = self.keep_first[a + product] + number              # rows of self.keep
        keep = self.keep[part_rows] if self.keep is not None else np.ones(len(product), bool)
        starts, lengths = picture_starts[rows], picture_lengths[rows]
        if self.job.verify_jpeg:
            view = memoryview(buffer)
            for k in np.flatnonzero(keep).tolist():
                if not _jpeg_decodes(view[starts[k]:starts[k] + lengths[k]]):
                    keep[k] = False
                    self._bad_image(a + product[k], int(number[k]), int(lengths[k]))
        if not keep.all():
            product, number, starts, lengths = product[keep], number[keep], starts[keep], lengths[keep]
        labels = self.labels[a + product]
        self.offsets.append(self.writer.write_many(buffer, starts, lengths, labels,
                                                   self.rows["product_id"][a + product], number))
        self.record_labels.append(labels)
        self.products += len(np.unique(product))

    def _bad_image(self, i, number, length):
        err = DataInputError(self.index.path, int(self.rows["offset"][i]), int(self.rows["product_id"][i]),
                             f"imgs[{number}] is not a decodable JPEG ({length} bytes)")
        if not self.job.skip_bad:
            raise err
        self.skipped.append(("image", err.as_dict()))

    def _write_products_slowly(self, a, b, buffer, starts):
        """Decode products a..b-1 of the part one by one (from `buffer` at `starts`, or read
        again when None) and write their records one by one."""
        for i in range(a, b):
            pos, length = int(self.positions[i]), int(self.rows["length"][i])
            raw = None if buffer is None else bytes(buffer[starts[i - a]:starts[i - a] + length])
            try:
                pictures = self.index.pictures(pos, raw)
            except DataInputError as e:
                if not self.job.skip_bad:
                    raise
                self.skipped.append(("product", e.as_dict()))
                continue
            label, product_id = float(self.labels[i]), int(self.rows["product_id"][i])
            k0, written = int(self.keep_first[i]), []
            for number, jpeg in enumerate(pictures):
                if self.keep is not None and not self.keep[k0 + number]:
                    continue
                if self.job.verify_jpeg and not _jpeg_decodes(jpeg):
                    self._bad_image(i, number, len(jpeg))
                    continue
                written.append(self.writer.write(label, product_id, number, jpeg))
            if written:
                self.offsets.append(np.array(written, np.uint64))
                self.record_labels.append(np.full(len(written), label, np.float32))
                self.products += 1


class _Placement:
    """Where a part's records go: `merged.rec` at the part's place as soon as every earlier part's
    size is known (then each batch goes out as soon as it is converted), held in memory until then."""

    def __init__(self, job, part, out):
        self.job, self.part, self.out = job, part, out
        self.offset, self.flushed, self.fd = None, 0, None

    def flush(self):
        """Write the records held in memory to their place, if it is known yet."""
        if self.offset is None:
            self.offset = self.job.part_offset(self.part)
        if self.offset is not None and self.out.size:
            if self.fd is None:
                self.fd = os.open(self.job.merged_path, os.O_WRONLY)
            _pwrite_all(self.fd, self.out.view(), self.offset + self.flushed)
            self.flushed += self.out.size
            self.out.size = 0

    def finish(self):
        """Write what is left, in `merged.rec` or, when an earlier part's size is still unknown,
        in `part-NNNNN.rec` (the parent copies it into place)."""
        try:
            self.flush()
            if self.offset is None:
                with atomic_path(self.job.part_path(self.part, ".rec")) as tmp:
                    # O_WRONLY without O_TRUNC (the file is new and empty): truncating makes ext4
                    # (auto_da_alloc) write it out on close, though it is soon copied and deleted.
                    fd = os.open(tmp, os.O_WRONLY)
                    try:
                        _pwrite_all(fd, self.out.view(), 0)
                    finally:
                        os.close(fd)
        finally:
            if self.fd is not None:
                os.close(self.fd)


def convert_part(job, part):
    """Worker: convert part `part`; its records go to their place in `merged.rec` as soon as
    every earlier part's size is known, else to `part-NNNNN.rec` (see `_Placement`); then write
    `part-NNNNN.npz` (record offsets, classes, skips)."""
    start, stop = job.parts[part]
    # Room for a read batch of records when the part's place is known (each batch then goes out
    # at once), else for the whole part (it may all wait in memory); 16 bytes an image covers
    # the difference between a record's header and padding and the image's BSON framing.
    held = READ_BATCH if job.part_offset(part) is not None else int(job.part_bytes[part])
    out = MemoryFile(held + 16 * int(job.keep_first[stop] - job.keep_first[start]), reuse=True)
    placement = _Placement(job, part, out)
    converter = _PartWriter(job, start, stop, out, after_batch=placement.flush)
    converter.run()
    job.sizes[part] = converter.writer.offset
    placement.finish()
    offsets = np.concatenate(converter.offsets) if converter.offsets else np.zeros(0, np.uint64)
    labels = np.concatenate(converter.record_labels) if converter.record_labels else np.zeros(0, np.float32)
    classes, class_counts = np.unique(labels, return_counts=True)
    kinds = collections.Counter(kind for kind, _ in converter.skipped)
    meta = {"records": len(offsets), "products": converter.products, "rec_bytes": converter.writer.offset,
            "skipped": [problem for _, problem in converter.skipped],
            "products_skipped": kinds["product"], "images_skipped": kinds["image"]}
    with atomic_path(job.part_path(part, ".npz")) as tmp:
        with open(tmp, "r+b") as f:
            np.savez(f, offsets=offsets, classes=classes.astype(np.int64),
                     class_counts=class_counts.astype(np.int64),
                     meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return part, meta


def _pwrite_all(fd, data, offset):
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)


def _load_part(job, part):
    with np.load(job.part_path(part, ".npz")) as z:
        return json.loads(z["meta"].tobytes().decode()), z["offsets"], z["classes"], z["class_counts"]


# --------------------------------------------------------------------------------------------
# Resuming and merging (parent process)
# --------------------------------------------------------------------------------------------
def _prepare_parts_dir(job, job_key):
    """Reuse the parts of an interrupted run of the same job; returns the set of done parts.

    A part is done when its `.npz` exists. Its records are then in `merged.rec` at their
    final place, or, while its `.rec` exists, in that file (to be copied in). A killed worker
    leaves no `.npz`: its part is converted again and rewritten at the same place (every
    part's size, hence place, depends only on the job)."""
    key_path = os.path.join(job.parts_dir, "job.json")
    if not os.path.exists(key_path) or _read_text(key_path) != job_key:
        shutil.rmtree(job.parts_dir, ignore_errors=True)
        os.makedirs(job.parts_dir)
        with atomic_open(key_path, "w", encoding="utf-8") as f:
            f.write(job_key)
        return set()
    for stale in glob.glob(os.path.join(job.parts_dir, ".*.tmp")):
        os.unlink(stale)
    done = {p for p in range(len(job.parts)) if os.path.exists(job.part_path(p, ".npz"))}
    log.info("resuming: %d of %d parts done", len(done), len(job.parts))
    return done


def _read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _copy_into(src_path, dst_fd, offset):
    """Copy the file at `src_path` into `dst_fd` at `offset`, in the kernel when possible."""
    with open(src_path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src.fileno(), dst_fd, min(size - copied, COPY_CHUNK), copied, offset + copied)
                if not n:
                    raise OSError("copy_file_range made no progress")
                copied += n
        except OSError:   # e.g. not supported between these file systems: copy in user space
            src.seek(copied)
            while chunk := src.read(16 << 20):
                _pwrite_all(dst_fd, chunk, offset + copied)
                copied += len(chunk)


def _run_parts(job, done, workers, name, progress=True):
    """Convert the missing parts, and copy the parts that a worker had to leave in their own
    file into `merged.rec`."""
    job.sizes = multiprocessing.RawArray("q", len(job.parts))     # shared with the forked workers
    sizes = np.frombuffer(job.sizes, np.int64)
    sizes[:] = -1
    for part in done:
        sizes[part] = _load_part(job, part)[0]["rec_bytes"]
    todo = [p for p in range(len(job.parts)) if p not in done]
    out = os.open(job.merged_path, os.O_WRONLY | os.O_CREAT, 0o666)
    results = ordered_map(convert_part, job, todo, workers)
    try:
        with tqdm(total=int(job.part_bytes.sum()), unit="B", unit_scale=True, desc=name,
                  disable=not progress) as bar:
            for part in range(len(job.parts)):
                if part not in done:
                    finished, _ = next(results)
                    assert finished == part, (finished, part)
                if os.path.exists(job.part_path(part, ".rec")):
                    _copy_into(job.part_path(part, ".rec"), out, job.part_offset(part))
                    os.unlink(job.part_path(part, ".rec"))
                bar.update(int(job.part_bytes[part]))
    finally:
        results.close()
        os.close(out)
        release_buffers()
        _read_buffers[0] = new_buffer(0)
    return job.merged_path


def _write_outputs(job, merged_path, paths, report):
    """Complete `report` from the parts, write the .idx, then move the outputs into place."""
    rec_path, idx_path, report_path = paths
    histogram = collections.Counter()
    records = base = 0
    totals = collections.Counter()
    idx_tmp = os.path.join(job.parts_dir, "merged.idx")
    with open(idx_tmp, "w", encoding="ascii") as f:
        for part in range(len(job.parts)):
            meta, offsets, classes, class_counts = _load_part(job, part)
            write_idx(f, offsets + np.uint64(base), first_key=records)
            records += meta["records"]
            base += meta["rec_bytes"]
            totals.update({k: meta[k] for k in ("products", "products_skipped", "images_skipped")})
            report["skipped"] += meta["skipped"]
            histogram.update(dict(zip(classes.tolist(), class_counts.tolist())))
    if os.path.getsize(merged_path) != base:
        raise RuntimeError(f"{merged_path}: {os.path.getsize(merged_path)} bytes, its parts say {base}")
    report["products"]["skipped_bad"] += totals["products_skipped"]
    report["products"]["written"] = totals["products"]
    report["images"]["skipped_bad"] = totals["images_skipped"]
    report["images"]["written"] = records
    report.update(records=records, rec_bytes=base)
    n_classes = report.pop("n_classes")
    if n_classes:
        report["class_histogram"] = [histogram.get(c, 0) for c in range(n_classes)]
    os.replace(merged_path, rec_path)
    os.replace(idx_tmp, idx_path)
    write_json(report_path, report)
    return report


# --------------------------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------------------------
def _fingerprint_inputs(index, options, shuffle):
    sig = lambda p: file_signature(p) if p else None   # noqa: E731
    return {
        "version": CONVERTER_VERSION, "bson": sig(index.path), "products_in_file": len(index),
        "categories": sig(options.categories), "split": sig(options.split), "side": options.side,
        "single_label_md5": sig(options.single_label_md5), "unique_md5": options.unique_md5,
        "max_per_category": options.max_per_category, "shuffle": shuffle,
        "seed": options.seed if shuffle else None, "verify_jpeg": options.verify_jpeg,
        "skip_bad": options.skip_bad,
    }


def _up_to_date(rec_path, idx_path, report_path, fingerprint):
    if not all(os.path.exists(p) for p in (rec_path, idx_path, report_path)):
        return None
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    except ValueError:
        return None
    if report.get("fingerprint") == fingerprint and os.path.getsize(rec_path) == report.get("rec_bytes"):
        return report
    return None


def _select_images(index, options, report, progress):
    """(positions, labels, keep): the products to write in file order, their labels and the
    per-image keep mask (None = all); products left without images are dropped."""
    positions = np.arange(len(index)) if options.split is None else \
        Split.load(options.split).positions(index, options.side)
    n_selected = len(positions)
    report["products"] = {"selected": n_selected}
    report["images"] = {"selected": int(index.n_images[positions].sum())}
    category_map = CategoryMap.from_csv(options.categories) if index.kind == "train" else None
    positions, labels = class_labels(index, positions, category_map, options.skip_bad, report["skipped"])
    report["products"]["skipped_bad"] = n_selected - len(positions)
    report["n_classes"] = len(category_map) if category_map is not None else 0
    filtered = collections.Counter()
    digests = ImageDigests.load_or_compute(index, options.digests, options.workers, progress) \
        if options.unique_md5 or options.single_label_md5 else None
    keep = image_filter(index, positions, labels, options, digests, filtered)
    report["images"]["filtered"] = dict(filtered)
    if keep is not None:
        n_images = index.n_images[positions].astype(np.int64)
        has_images = np.add.reduceat(keep, np.cumsum(n_images) - n_images) > 0 if len(keep) else n_images > 0
        keep = keep[np.repeat(has_images, n_images)]
        positions, labels = positions[has_images], labels[has_images]
    report["products"]["all_images_filtered"] = n_selected - report["products"]["skipped_bad"] - len(positions)
    return positions, labels, keep


def _make_job(index, positions, labels, keep, options, shuffle, parts_dir):
    """Put the products in record order and cut that order into parts."""
    order = np.random.RandomState(options.seed).permutation(len(positions)) if shuffle else np.arange(len(positions))
    n_images = index.n_images[positions].astype(np.int64)
    keep_first = np.zeros(len(order) + 1, np.int64)
    np.cumsum(n_images[order], out=keep_first[1:])
    if keep is not None:
        file_first = np.zeros(len(order) + 1, np.int64)
        np.cumsum(n_images, out=file_first[1:])
        keep = keep[image_rows(file_first, order)]
    products = positions[order]
    lengths = index.records["length"][products]
    parts = plan_parts(lengths, int(options.part_mb * 1024 * 1024), stagger=True)
    part_bytes = np.add.reduceat(lengths.astype(np.int64), [a for a, _ in parts]) if parts else np.zeros(0, np.int64)
    return Job(index=index, parts_dir=parts_dir, products=products, labels=labels[order], keep=keep,
               keep_first=keep_first, parts=parts, part_bytes=part_bytes, verify_jpeg=options.verify_jpeg,
               skip_bad=options.skip_bad)


def convert(bson_path, rec_path, options=ConvertOptions(), progress=True):
    """Convert `bson_path` (or one side of a split of it) to `rec_path` + `.idx` + `.report.json`.

    Returns the report (a dict, also written as JSON)."""
    if (options.split is None) != (options.side is None):
        raise ValueError("--split and --side go together")
    if options.side is not None and options.side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {options.side!r}")
    paths = output_paths(rec_path)
    rec_path = paths[0]
    out_dir, name = os.path.dirname(os.path.abspath(rec_path)), os.path.basename(rec_path)[:-4]
    started = time.time()

    index = BsonIndex.load_or_build(bson_path, skip_bad=options.skip_bad,
                                    kind="train" if options.categories else "auto", progress=progress)
    if index.kind == "train" and not options.categories:
        raise ValueError(f"{bson_path} has category ids: pass --categories category_names.csv")
    if index.kind == "test" and (options.max_per_category is not None or options.single_label_md5):
        raise ValueError(f"{bson_path} has no category ids: --max-per-category and --single-label-md5 need them")
    shuffle = options.shuffle if options.shuffle is not None else (index.kind == "train" and options.side != "val")
    inputs = _fingerprint_inputs(index, options, shuffle)
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    if not options.force:
        report = _up_to_date(*paths, fingerprint)
        if report is not None:
            log.info("%s is up to date (%d records); --force converts again", rec_path, report["records"])
            shutil.rmtree(os.path.join(out_dir, f".{name}.parts"), ignore_errors=True)   # if a kill left it
            return report
    for stale in glob.glob(os.path.join(out_dir, f".{name}.*.tmp")):
        os.unlink(stale)   # left by a run killed while publishing

    report = {"fingerprint": fingerprint, "inputs": inputs, "kind": index.kind,
              "index_problems": index.problems, "skipped": []}
    positions, labels, keep = _select_images(index, options, report, progress)
    job = _make_job(index, positions, labels, keep, options, shuffle, os.path.join(out_dir, f".{name}.parts"))
    n_images = int(job.keep_first[-1]) if keep is None else int(keep.sum())
    del positions, labels, keep     # the job holds them in record order
    workers = options.workers or os.cpu_count()
    log.info("%s: %d products, %d images from %s%s; %s order; %d parts, %d workers", name, len(job.products),
             n_images, bson_path,
             f" ({options.side} side of {options.split})" if options.split else "",
             f"shuffled (seed {options.seed})" if shuffle else "file", len(job.parts), workers)

    job_key = json.dumps({"fingerprint": fingerprint, "parts": job.parts}, sort_keys=True)
    done = _prepare_parts_dir(job, job_key)
    merged_path = _run_parts(job, done, workers, name, progress)
    report = _write_outputs(job, merged_path, paths, report)
    shutil.rmtree(job.parts_dir)
    elapsed = time.time() - started
    log.info("%s: %d records, %.1f MB in %.1f s (%.1f MB/s of BSON input)", rec_path, report["records"],
             report["rec_bytes"] / 1e6, elapsed, job.part_bytes.sum() / 1e6 / max(elapsed, 1e-9))
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bson", help="train.bson or test.bson (indexed on first use, index cached beside it)")
    parser.add_argument("--out", required=True, help="output .rec path; .idx and .report.json go beside it")
    parser.add_argument("--categories", help="category_names.csv (required for a train BSON)")
    parser.add_argument("--split", help="split file of data.split_train_bson (with --side)")
    parser.add_argument("--side", choices=SIDES, help="side of --split to convert")
    parser.add_argument("--unique-md5", action="store_true", help="keep only the first occurrence of each image MD5")
    parser.add_argument("--single-label-md5", metavar="DICT",
                        help="keep only images whose MD5 has at most one category in this .md5.npz dictionary")
    parser.add_argument("--max-per-category", type=int, metavar="N", help="keep the first N images of each category")
    parser.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                        help="seeded product order (default: on for a labelled side other than val)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="shuffle seed (default 0xC0FFEE)")
    parser.add_argument("--verify-jpeg", action="store_true", help="decode every image with OpenCV (slow)")
    parser.add_argument("--skip-bad", action="store_true", help="skip bad input and list it in the report")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: all cores)")
    parser.add_argument("--part-mb", type=float, default=DEFAULT_PART_MB,
                        help="BSON megabytes per part (the unit of parallel work and of resuming)")
    parser.add_argument("--digests", help="cache of per-image MD5s (default: <bson>.image_md5.npz)")
    parser.add_argument("--force", action="store_true", help="convert even when the output is up to date")
    args = parser.parse_args(argv)
    if args.max_per_category is not None and args.max_per_category < 1:
        parser.error("--max-per-category must be at least 1")
    if args.part_mb <= 0:
        parser.error("--part-mb must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fields = {f.name for f in dataclasses.fields(ConvertOptions)}
    options = ConvertOptions(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        report = convert(args.bson, args.out, options)
    except (DataInputError, ValueError, KeyError, FileNotFoundError) as e:
        raise SystemExit(f"bson2rec: error: {e}") from None
    print(json.dumps({k: report[k] for k in ("records", "rec_bytes", "products", "images")}))


if __name__ == "__main__":
    main()
