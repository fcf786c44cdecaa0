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
  --single-label-md5 DICT      keep only images whose MD5 has exactly one category in DICT
                               (an `.md5.npz` of data.md5_dict): MD5s absent from DICT are
                               dropped too, as the reference's filter did, unless
                               `--keep-unseen-md5`;
  --max-per-category N         keep the first N images of each category.

Record order: products in file order, or with `--shuffle` (the default for a labelled side
that is not validation) in a seeded order (seed 0xC0FFEE): runs of consecutive products of
about `--shuffle-block-kb` KB of records (default 64, ~8 products; 0 = single products) in
the permutation `numpy.random.RandomState(seed).permutation` of the runs (see
`shuffled_order`); the images of a product stay next to each other, in `imgs` order.
Readers without the `.idx` (which only shuffle within chunks) thus still see mixed
categories; with the `.idx`, ImageRecordIter shuffles globally anyway. Validation and test
sides keep file order for streaming evaluation.

How it runs: every record's size is known before a byte is converted: the index holds each
picture's length and, gathered by its single pass for the conversion (`data.picture_facts`),
the number of 4-byte-aligned RecordIO magic words in it (each one makes its record 4 bytes
longer, see `data.recordio`). The parent plans where the records of each
product go in the output (`Plan`), then cuts the products, in file order, into parts of about
`--part-mb` MB of BSON input. Worker processes (fork, `--workers`, default all cores) convert
parts independently, reading the BSON file in order, 8 MB of documents per `os.preadv` (the
next batch announced to the kernel with `posix_fadvise(WILLNEED)` so that its disk reads
overlap with the conversion): the pictures of documents with Kaggle's layout are located in
the read buffer without decoding (`bson_layout.locate_pictures`, vectorised, as strict as
pymongo), any other document is decoded with pymongo; the batch's records are assembled in
memory (numpy headers, one copy of each JPEG, one scan for RecordIO's magic word:
`ImageRecordWriter.write_many`), and each run of products that are also consecutive in record
order (a shuffle block, or the whole batch in file order) goes with one `os.pwrite` to its
planned place in `merged.rec` (in a hidden `.NAME.parts/` folder, created at its final size).
So the input is read sequentially whatever the record order: random reads of the 58 GB
train.bson, which no page cache holds, would wait for the disk product by product, while the
scattered writes land in the page cache and are written out in order by the kernel. A
product whose records do not have their planned size (the file changed behind its index)
stops the conversion (`StaleIndexError`; with `--skip-bad` the file is indexed again and the
conversion starts over). A finished part leaves `part-NNNNN.done`. Memory is bounded: a
worker holds an 8 MB read buffer and a batch's records; the parent holds per-product tables
(the offset index and the plan: ~100 bytes a product) and per-image ones (picture lengths
and the plan's record sizes: 8 bytes an image; with `--unique-md5` or `--single-label-md5`
also the 16-byte MD5s of the images). The parent then writes the `.idx` and the report from
the plan and renames the three into place, the report last. The plan depends only on the
inputs and options, never on the number of workers, so the output is byte-identical for any
`--workers`; a run killed at any point (Ctrl-C returns at once: the workers are killed, see
`data.parallel`) resumes from the parts marked done (any other part is converted again, to
the same places) and produces the same files. A finished output whose report matches the
inputs and options, and whose `.rec` and `.idx` are those the report sealed (`data.conversion_report.seal`), is
left alone (`--force` converts again); anything else is converted again, never reused. One
run writes an output at a time: a second one fails at once naming the first (`data.locks`).
A full disk stops the run naming the output, before anything is published.

The report (`NAME.report.json`): `products` and `images` (selected, skipped as bad,
filtered by reason, written), `records`, `rec_bytes`, `skipped` (bad products and images of
this output, each with path, offset, product_id and reason), `index_problems` (documents of
the BSON file that indexing skipped with `--skip-bad`: they belong to no side),
`class_histogram` (records per class id, train only), `inputs` and their `fingerprint`,
and `seal` (the `.rec`'s size and a digest of its first and last MB, a digest of the `.idx`).
It holds no timings, so identical runs give identical files.

Bad input (truncated or corrupt BSON, a product without images, a negative `_id`, a train
product without category, a duplicate `_id`, a category missing from the CSV, a picture that
will not decode) stops the conversion with an error naming file, offset and product (and the
image number of a picture); with `--skip-bad` it is left out and listed in the report.
Pictures are checked by default (`--no-verify-jpeg` writes them as they are): the index pass
checks every picture's JPEG structure as it reads it (`data.jpeg`: empty pictures, random
bytes, truncated pictures and broken headers; well under a microsecond a picture), so the
conversion knows which ones will not decode before it plans the records, without reading
the file again. A test file (no `category_id`) converts with labels -1 even when
`--categories` is given.

    python -m data.bson2rec train.bson --categories category_names.csv \\
        --split work/rec/A.split.npz --side train --out work/rec/A_train.rec
    python -m data.bson2rec test.bson --out work/rec/test.rec
"""
import argparse
import collections
import contextlib
import ctypes
import dataclasses
import errno
import functools
import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import time

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_open, exclusive_output, write_json
from data.bson_index import BsonIndex
from data.bson_layout import NO_CATEGORY, locate_pictures
from data.categories import CategoryMap, UnknownCategoryError
from data.cli import add_common_options, add_skip_bad_option, add_workers_option, command, setup_logging
from data.conversion_report import ConversionReport, SelectionCounts, seal, up_to_date
from data.errors import DataInputError, PictureError, SkipBad, StaleIndexError
from data.jpeg import describe as describe_jpeg_problem
from data.md5_dict import ImageDigests, Md5Dictionary, first_occurrences
from data.npz_store import file_signature
from data.parallel import ordered_map
from data.picture_facts import JPEG_PROBLEMS, RECORDIO_MAGIC_WORDS
from data.recordio import (ImageRecordWriter, MemoryFile, image_record_bytes, new_buffer, record_paths, release_buffers,
                           write_idx)
from data.rows import first_rows, image_rows
from data.split_train_bson import SIDES, Split

log = logging.getLogger(__name__)

CONVERTER_VERSION = 3          # 3: every record at its planned place
DEFAULT_SEED = 0xC0FFEE
DEFAULT_PART_MB = 32
DEFAULT_SHUFFLE_BLOCK_KB = 64
TEST_LABEL = -1.0
READ_BATCH = 8 << 20               # bytes of BSON documents read and converted at a time


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """What to convert and how; every field except `workers` and `force` defines the output."""
    categories: str = None          # category_names.csv: required for a train BSON
    split: str = None               # split file of data.split_train_bson, with `side`
    side: str = None
    unique_md5: bool = False
    single_label_md5: str = None    # an Md5Dictionary file
    keep_unseen_md5: bool = False   # with single_label_md5: keep MD5s absent from it
    max_per_category: int = None
    shuffle: bool = None            # None: shuffle a labelled side that is not validation
    seed: int = DEFAULT_SEED
    shuffle_block_kb: float = DEFAULT_SHUFFLE_BLOCK_KB
    verify_jpeg: bool = True        # leave out (or stop at) pictures that will not decode
    skip_bad: bool = False
    part_mb: float = DEFAULT_PART_MB
    digests: str = None             # cache of per-image MD5s (default <bson>.image_md5.npz)
    workers: int = None             # default: all cores
    force: bool = False


# --------------------------------------------------------------------------------------------
# Planning: which images, in which order, in which parts (parent process, pure numpy)
# --------------------------------------------------------------------------------------------
def class_labels(index, positions, category_map, bad):
    """(kept positions, float32 labels): class ids from `category_map`, or -1 for all when it
    is None (a test file).

    A product without category id (in a file whose other products have one) or whose
    category id is missing from the CSV is a `DataInputError` for `bad` (a `SkipBad`): it
    raises, or is dropped and recorded."""
    if category_map is None:
        return positions, np.full(len(positions), TEST_LABEL, np.float32)
    categories = index.category_ids[positions]

    def drop(dropped, reason):
        for pos in bad.to_handle(positions[dropped]).tolist():
            offset, _, product_id = index.records.item(pos)[:3]
            bad.handle(DataInputError(index.path, offset, product_id, reason))
        return positions[~dropped], categories[~dropped]

    unlabelled = categories == NO_CATEGORY
    if unlabelled.any():
        positions, categories = drop(unlabelled, "train product without category_id")
    while True:   # one round per distinct unknown category (normally none)
        try:
            return positions, category_map.classes_of(categories).astype(np.float32)
        except UnknownCategoryError as unknown:
            positions, categories = drop(categories == unknown.category_id,
                                         f"category_id {unknown.category_id} is not in {category_map.path}")


def image_filter(index, positions, labels, options, digests, filtered):
    """Per-image keep mask over the images of `positions` (file order), or None to keep all.

    `filtered` (a Counter) receives how many images each filter removed."""
    if not (options.unique_md5 or options.single_label_md5 or options.max_per_category is not None):
        return None
    rows = index.image_rows(positions)
    keep = np.ones(len(rows), bool)
    if options.unique_md5:
        keep = first_occurrences(digests.image_md5[rows])
        filtered["duplicate_md5"] += int((~keep).sum())
    if options.single_label_md5:
        # The reference kept an image when its MD5's category set had exactly one member,
        # so MD5s the dictionary does not hold went too.
        n_categories = Md5Dictionary.load(options.single_label_md5).images.lookup(digests.image_md5[rows]).n_categories
        filtered["multi_label_md5"] += int((keep & (n_categories > 1)).sum())
        if not options.keep_unseen_md5:
            filtered["unseen_md5"] += int((keep & (n_categories == 0)).sum())
        keep &= n_categories <= 1 if options.keep_unseen_md5 else n_categories == 1
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


def plan_parts(lengths, part_bytes):
    """Cut a sequence of document lengths into consecutive (start, stop) parts of ~part_bytes."""
    ends = np.cumsum(lengths, dtype=np.int64)
    if not len(ends):
        return []
    n_parts = max(1, int(-(-ends[-1] // part_bytes)))
    cuts = np.searchsorted(ends, np.arange(1, n_parts) * ends[-1] / n_parts, side="left") + 1
    cuts = np.unique(np.concatenate([[0], np.minimum(cuts, len(ends)), [len(ends)]]))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def shuffled_order(product_bytes, seed, block_bytes=0):
    """Record order of products (given in file order) with `product_bytes` of records each:
    blocks of consecutive products, each starting where the records before it reach a new
    multiple of `block_bytes`, in the seeded permutation `RandomState(seed).permutation`;
    products keep their file order within a block. With `block_bytes` 0 every product is a
    block of its own (the permutation itself).

    Why blocks: the conversion reads the BSON file in order and writes each block of records
    to its place with one `pwrite`; writes of single products (~9 KB) to random places cost
    the page cache about 2.5x more per byte than 64 KB ones (1.0 against 0.4 s per GB here).
    A 64 KB block holds ~8 products, so a reader without the `.idx` that shuffles 64 MB
    chunks (ImageRecordIter) mixes ~1,000 blocks drawn from the whole file in each: as mixed
    as a shuffle of single products."""
    n = len(product_bytes)
    if block_bytes <= 0:
        return np.random.RandomState(seed).permutation(n)
    stretch = (np.cumsum(product_bytes) - product_bytes) // block_bytes     # non-decreasing
    block = np.zeros(n, np.int64)
    np.cumsum(stretch[1:] != stretch[:-1], out=block[1:])
    rank = np.empty(int(block[-1]) + 1 if n else 0, np.int64)
    rank[np.random.RandomState(seed).permutation(len(rank))] = np.arange(len(rank))
    return np.argsort(rank[block], kind="stable")


@dataclasses.dataclass
class Plan:
    """Every record's place, decided before any is written (parent process, pure numpy).

    Products are held in file order (`positions`); `order` lists them in record order. The
    size of every record is known from the index (picture lengths and magic words), so the
    records of product `i` go to `dest[i]` of the output, `product_bytes[i]` bytes."""
    positions: np.ndarray       # index positions of the products to write, file order
    labels: np.ndarray          # float32 label per product
    keep: np.ndarray            # per-image keep flags (file order), or None for all
    keep_first: np.ndarray      # images of product i are keep[keep_first[i]:keep_first[i+1]]
    record_bytes: np.ndarray    # uint32 record size per image (file order; kept or not)
    order: np.ndarray           # products in record order
    dest: np.ndarray            # int64 output offset of each product's first record
    product_bytes: np.ndarray   # int64 output bytes of each product

    @property
    def total_bytes(self):
        return int(self.product_bytes.sum())

    @classmethod
    def make(cls, index, positions, labels, keep, shuffle=False, seed=DEFAULT_SEED, block_bytes=0, chunk=1 << 16):
        n_images = index.n_images[positions].astype(np.int64)
        keep_first = first_rows(n_images)
        record_bytes = np.empty(int(keep_first[-1]), np.uint32)
        product_bytes = np.zeros(len(positions), np.int64)
        for a in range(0, len(positions), chunk):      # (bounded temporaries)
            b = min(a + chunk, len(positions))
            rows = index.image_rows(positions[a:b])
            images = slice(keep_first[a], keep_first[b])
            magic_words = index.picture_fact(RECORDIO_MAGIC_WORDS, rows)
            record_bytes[images] = image_record_bytes(index.picture_lengths[rows], magic_words,
                                                      np.repeat(index.product_ids[positions[a:b]], n_images[a:b]))
            kept = record_bytes[images] if keep is None else np.where(keep[images], record_bytes[images], 0)
            product_bytes[a:b] = np.add.reduceat(kept.astype(np.int64), keep_first[a:b] - keep_first[a])
        order = shuffled_order(product_bytes, seed, block_bytes) if shuffle else np.arange(len(positions))
        dest = np.empty(len(positions), np.int64)
        dest[order] = np.cumsum(product_bytes[order]) - product_bytes[order]
        return cls(positions=positions, labels=labels, keep=keep, keep_first=keep_first, record_bytes=record_bytes,
                   order=order, dest=dest, product_bytes=product_bytes)

    def record_offsets(self, chunk=1 << 14):
        """Yield (labels, offsets) of the records in record order, `chunk` products at a time."""
        base = 0
        for a in range(0, len(self.order), chunk):
            products = self.order[a:a + chunk]
            rows = image_rows(self.keep_first, products)
            sizes = self.record_bytes[rows].astype(np.int64)
            labels = np.repeat(self.labels[products], np.diff(self.keep_first)[products])
            if self.keep is not None:
                sizes, labels = sizes[self.keep[rows]], labels[self.keep[rows]]
            ends = np.cumsum(sizes) + base
            yield labels, (ends - sizes).astype(np.uint64)
            base = int(ends[-1]) if len(ends) else base

    def fingerprint(self):
        """A digest of the plan (resuming needs the same one)."""
        digest = hashlib.sha1()
        for array in (self.positions, self.dest, self.product_bytes):
            digest.update(np.ascontiguousarray(array).tobytes())
        if self.keep is not None:
            digest.update(np.packbits(self.keep).tobytes())
        return digest.hexdigest()


@dataclasses.dataclass
class Job:
    """Everything a worker needs to convert a part (shared with the workers by fork)."""
    index: BsonIndex
    plan: Plan
    parts: list                 # (start, stop) ranges of plan.positions (file order)
    part_bytes: np.ndarray      # BSON bytes of each part
    parts_dir: str

    def part_path(self, part, suffix):
        return os.path.join(self.parts_dir, f"part-{part:05d}{suffix}")

    @property
    def merged_path(self):
        return os.path.join(self.parts_dir, "merged.rec")


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
    """Converts the products of one part (consecutive in the file), a read batch at a time: the
    batch's records are assembled in memory, then each run of products that are also
    consecutive in record order goes with one `os.pwrite` to its planned place in `fd`."""

    def __init__(self, job, start, stop, fd):
        self.index, self.plan, self.fd = job.index, job.plan, fd
        self.start, self.stop = start, stop
        self.rows = self.index.records[self.plan.positions[start:stop]]
        self.out = MemoryFile(0, reuse=True)
        self.writer = ImageRecordWriter(self.out)
        self.records = 0

    def run(self):
        lengths = self.rows["length"].astype(np.int64)
        batches = read_batches(lengths)
        buffer = _read_buffer(int(lengths.max()) if len(lengths) else 0)
        positions = self.plan.positions[self.start:self.stop]
        for k, (a, b) in enumerate(batches):
            # Announce the next batch (and at first this one) to the kernel before reading this
            # one: its disk reads then overlap with the conversion of this batch.
            for c, d in batches[k if k == 0 else k + 1:k + 2]:
                self.index.prefetch(positions[c:d])
            starts = self.index.read_into(positions[a:b], buffer)
            self.out.size = self.writer.offset = 0
            self.out.reserve(int(self.plan.product_bytes[self.start + a:self.start + b].sum()))
            ends = self._assemble(a, b, buffer, starts)
            self._place(a, b, ends)

    def _assemble(self, a, b, buffer, starts):
        """Assemble the records of products a..b-1 of the part in `self.out`; returns the end
        of each product's records there."""
        rows = self.rows[a:b]
        ok, first, picture_starts, picture_lengths = locate_pictures(
            buffer, starts, rows["length"], rows["product_id"], rows["n_images"], rows["category_id"])
        ends = np.zeros(b - a, np.int64)
        # Runs of products with the Kaggle layout go out as one batch of records; any other
        # product (another layout) is decoded on its own.
        bounds = [0, *(np.flatnonzero(ok[1:] != ok[:-1]) + 1).tolist(), len(ok)]
        for i, j in zip(bounds[:-1], bounds[1:]):
            if ok[i]:
                self._assemble_located(a, i, j, buffer, first, picture_starts, picture_lengths, ends)
            else:
                for k in range(i, j):
                    self._assemble_decoded(a + k, bytes(buffer[starts[k]:starts[k] + int(rows["length"][k])]))
                    ends[k] = self.writer.offset
        return ends

    def _assemble_located(self, a, i, j, buffer, first, picture_starts, picture_lengths, ends):
        """Products a+i..a+j-1 of the part, whose pictures `locate_pictures` found."""
        plan, p0 = self.plan, self.start + a
        n_images = np.diff(first[i:j + 1])
        product = np.repeat(np.arange(i, j), n_images)                  # batch row of each image
        rows = slice(first[i], first[j])
        number = np.arange(first[i], first[j]) - first[product]
        starts, lengths = picture_starts[rows], picture_lengths[rows]
        if plan.keep is not None:
            keep = plan.keep[plan.keep_first[p0 + product] + number]
            product, number, starts, lengths = product[keep], number[keep], starts[keep], lengths[keep]
        offsets = self.writer.write_many(buffer, starts, lengths, plan.labels[p0 + product],
                                         self.rows["product_id"][a + product], number)
        # Every product has a kept image (the plan drops the others): its records end where
        # the next product's begin.
        if len(product):
            last = np.flatnonzero(np.diff(product, append=j))
            ends[product[last]] = np.append(offsets[last[:-1] + 1].astype(np.int64), self.writer.offset)
        self.records += len(product)

    def _assemble_decoded(self, i, raw):
        """Product i of the part (not of Kaggle's layout), decoded by pymongo."""
        plan, p = self.plan, self.start + i
        pictures = self.index.pictures(int(plan.positions[p]), raw)
        label, product_id = float(plan.labels[p]), int(self.rows["product_id"][i])
        k0 = int(plan.keep_first[p])
        for number, jpeg in enumerate(pictures):
            if plan.keep is None or plan.keep[k0 + number]:
                self.writer.write(label, product_id, number, jpeg)
                self.records += 1

    def _place(self, a, b, ends):
        """Write the assembled products a..b-1 of the part to their planned places."""
        plan, p = self.plan, slice(self.start + a, self.start + b)
        sizes = np.diff(ends, prepend=0)
        wrong = np.flatnonzero(sizes != plan.product_bytes[p])
        if len(wrong):
            row = self.rows[a + wrong[0]]
            raise StaleIndexError(self.index.path, int(row["offset"]), int(row["product_id"]),
                                  f"records of {sizes[wrong[0]]} bytes where the index plans "
                                  f"{plan.product_bytes[p][wrong[0]]}")
        dest = plan.dest[p]
        breaks = np.flatnonzero(dest[1:] != dest[:-1] + sizes[:-1]) + 1
        view = self.out.view()
        for i, j in zip([0, *breaks.tolist()], [*breaks.tolist(), len(dest)]):
            begin = int(ends[i - 1]) if i else 0
            _pwrite_all(self.fd, view[begin:int(ends[j - 1])], int(dest[i]))


def convert_part(job, part):
    """Worker: convert part `part` into its planned places in `merged.rec`, then mark it done
    (`part-NNNNN.done`, holding its record count)."""
    start, stop = job.parts[part]
    fd = os.open(job.merged_path, os.O_WRONLY)
    try:
        converter = _PartWriter(job, start, stop, fd)
        converter.run()
    finally:
        os.close(fd)
    with atomic_open(job.part_path(part, ".done"), "w", encoding="utf-8") as f:
        f.write(json.dumps({"records": converter.records}))
    return part


def preallocate(fd, size):
    """Reserve the disk blocks of the file's first `size` bytes (Linux `fallocate(2)`), so that a
    full disk fails the conversion at once, and writes to scattered places cost the page cache
    less (about a tenth of the conversion's CPU here). Where the file system cannot (or on
    other systems), nothing happens: unlike `os.posix_fallocate`, this never falls back to
    writing zeros."""
    libc = _libc()
    if libc is None or not size:
        return
    if libc.fallocate(fd, 0, ctypes.c_int64(0), ctypes.c_int64(size)) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EFBIG):
            raise OSError(err, f"no room for the {size:,}-byte output", os.readlink(f"/proc/self/fd/{fd}"))
        log.debug("fallocate: %s", os.strerror(err))


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        return libc
    except (OSError, AttributeError):
        return None


def _pwrite_all(fd, data, offset):
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)


# --------------------------------------------------------------------------------------------
# Resuming and merging (parent process)
# --------------------------------------------------------------------------------------------
def _prepare_parts_dir(job, job_key):
    """Reuse the parts of an interrupted run of the same job; returns the set of done parts.

    A part is done when its `.done` marker exists: its records are at their planned places in
    `merged.rec`. A killed worker leaves no marker: its part is converted again, to the same
    places (they depend only on the job). Without `merged.rec` (a run killed while it
    published the outputs had moved it already) nothing is reused."""
    key_path = os.path.join(job.parts_dir, "job.json")
    if not os.path.exists(key_path) or _read_text(key_path) != job_key or not os.path.exists(job.merged_path):
        shutil.rmtree(job.parts_dir, ignore_errors=True)
        os.makedirs(job.parts_dir)
        with atomic_open(key_path, "w", encoding="utf-8") as f:
            f.write(job_key)
        return set()
    for stale in glob.glob(os.path.join(job.parts_dir, ".*.tmp")):
        os.unlink(stale)
    done = {p for p in range(len(job.parts)) if os.path.exists(job.part_path(p, ".done"))}
    log.info("resuming: %d of %d parts done", len(done), len(job.parts))
    return done


def _read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _run_parts(job, done, workers, name, progress=True):
    """Convert the parts not done yet into `merged.rec` (created at its planned size)."""
    with open(job.merged_path, "ab") as f:
        f.truncate(job.plan.total_bytes)
        preallocate(f.fileno(), job.plan.total_bytes)
    todo = [p for p in range(len(job.parts)) if p not in done]
    try:
        with tqdm(total=int(job.part_bytes.sum()), unit="B", unit_scale=True, desc=name,
                  disable=not progress) as bar:
            bar.update(int(job.part_bytes[sorted(done)].sum()) if done else 0)
            for part in ordered_map(convert_part, job, todo, workers):
                bar.update(int(job.part_bytes[part]))
    finally:
        release_buffers()
        _read_buffers[0] = new_buffer(0)
    return job.merged_path


def _write_idx(job, merged_path, n_classes):
    """Write the `.idx` in the parts folder from the plan and check the parts against the
    plan; returns (its path, the records, records per class id or None when `n_classes` is 0)."""
    histogram = np.zeros(max(n_classes, 1), np.int64)
    records = 0
    idx_tmp = os.path.join(job.parts_dir, "merged.idx")
    with open(idx_tmp, "w", encoding="ascii") as f:
        for labels, offsets in job.plan.record_offsets():
            write_idx(f, offsets, first_key=records)
            records += len(offsets)
            if n_classes:
                histogram += np.bincount(labels.astype(np.int64), minlength=n_classes)
    written = sum(json.loads(_read_text(job.part_path(p, ".done")))["records"] for p in range(len(job.parts)))
    if written != records or os.path.getsize(merged_path) != job.plan.total_bytes:
        raise RuntimeError(f"{merged_path}: {written} records of {os.path.getsize(merged_path)} bytes, "
                           f"the plan says {records} of {job.plan.total_bytes}")
    return idx_tmp, records, histogram.tolist() if n_classes else None


def _publish(job, merged_path, idx_tmp, paths, report):
    """Publish the `.rec`, the `.idx` and the report (the JSON of a `ConversionReport`).

    They are one unit, whose report records what `up_to_date` checks of the other two
    (`seal`). All three are complete in the parts folder before any is published (a full
    disk fails the run before that); then the old report goes, and the new one is renamed into
    place last. A run killed between the renames leaves a `.rec`/`.idx` without a report,
    which the next run converts again."""
    rec_path, idx_path, report_path = paths
    report_tmp = os.path.join(job.parts_dir, "report.json")
    write_json(report_tmp, report)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(report_path)
    os.replace(merged_path, rec_path)
    os.replace(idx_tmp, idx_path)
    os.replace(report_tmp, report_path)


# --------------------------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------------------------
def _fingerprint_inputs(index, options, shuffle):
    sig = lambda p: file_signature(p) if p else None   # noqa: E731
    # keep_unseen_md5 only where it matters, so outputs without --single-label-md5 keep
    # their fingerprints (and outputs made before it existed are converted again).
    unseen = {"keep_unseen_md5": options.keep_unseen_md5} if options.single_label_md5 else {}
    return {
        "version": CONVERTER_VERSION, "bson": sig(index.path), "products_in_file": len(index),
        "categories": sig(options.categories), "split": sig(options.split), "side": options.side,
        "single_label_md5": sig(options.single_label_md5), "unique_md5": options.unique_md5,
        "max_per_category": options.max_per_category, "shuffle": shuffle,
        "seed": options.seed if shuffle else None,
        "shuffle_block_kb": options.shuffle_block_kb if shuffle else None, "verify_jpeg": options.verify_jpeg,
        "skip_bad": options.skip_bad, **unseen,
    }


def _with_images(index, positions, labels, keep):
    """Drop the products of which `keep` keeps no image."""
    if keep is None:
        return positions, labels, keep
    n_images = index.n_images[positions].astype(np.int64)
    has_images = np.add.reduceat(keep, first_rows(n_images)[:-1]) > 0 if len(keep) else n_images > 0
    return positions[has_images], labels[has_images], keep[np.repeat(has_images, n_images)]


def verify_jpegs(index, positions, keep, bad):
    """The keep mask (None = all) without the kept pictures of `positions` that will not
    decode, as the index pass found them (`data.picture_facts.JPEG_PROBLEMS`: no picture is read
    here). Each is a located `PictureError` (file, offset, product, image number) for `bad`
    (a `SkipBad`): the first raises, or each is recorded."""
    rows = index.image_rows(positions)
    codes = index.picture_fact(JPEG_PROBLEMS, rows)
    if keep is not None:
        codes[~keep] = 0
    undecodable = np.flatnonzero(codes)
    if not len(undecodable):
        return keep
    first = first_rows(index.n_images[positions].astype(np.int64))
    keep = np.ones(len(rows), bool) if keep is None else keep.copy()
    for row, i in zip(undecodable.tolist(), (np.searchsorted(first, undecodable, side="right") - 1).tolist()):
        offset, _, product_id = index.records.item(int(positions[i]))[:3]
        bad.handle(PictureError(index.path, offset, product_id, row - int(first[i]),
                                describe_jpeg_problem(int(codes[row]), int(index.picture_lengths[rows[row]]))))
        keep[row] = False
    return keep


@dataclasses.dataclass(frozen=True)
class Selection:
    """The products to write (file order) with their labels and per-image keep mask (None =
    all), and what the report says of how they were chosen."""
    positions: np.ndarray
    labels: np.ndarray
    keep: np.ndarray
    n_classes: int                  # classes of the category map; 0 for a test file
    skipped: list                   # the bad products and pictures left out (`--skip-bad`)
    counts: SelectionCounts


def _select_images(index, options, progress):
    """The `Selection` of `options` from `index`; products left without images are dropped."""
    bad = SkipBad(options.skip_bad, log)
    positions = np.arange(len(index)) if options.split is None else \
        Split.load(options.split).positions(index, options.side)
    n_selected, images_selected = len(positions), int(index.n_images[positions].sum())
    category_map = CategoryMap.from_csv(options.categories) if index.labelled else None
    positions, labels = class_labels(index, positions, category_map, bad)
    n_labelled = len(positions)
    filtered = collections.Counter()
    digests = ImageDigests.load_or_compute(index, options.digests, options.workers, progress) \
        if options.unique_md5 or options.single_label_md5 else None
    keep = image_filter(index, positions, labels, options, digests, filtered)
    positions, labels, keep = _with_images(index, positions, labels, keep)
    all_images_filtered = n_labelled - len(positions)
    images_skipped_bad = 0
    if options.verify_jpeg:
        n_skipped = len(bad.records)
        keep = verify_jpegs(index, positions, keep, bad)
        images_skipped_bad = len(bad.records) - n_skipped
        n_verified = len(positions)
        positions, labels, keep = _with_images(index, positions, labels, keep)
        n_labelled -= n_verified - len(positions)
    counts = SelectionCounts(products_selected=n_selected, images_selected=images_selected, filtered=dict(filtered),
                             all_images_filtered=all_images_filtered, images_skipped_bad=images_skipped_bad,
                             products_skipped_bad=n_selected - n_labelled)
    n_classes = len(category_map) if category_map is not None else 0
    return Selection(positions, labels, keep, n_classes, bad.records, counts)


def convert(bson_path, rec_path, options=ConvertOptions(), progress=True):
    """Convert `bson_path` (or one side of a split of it) to `rec_path` + `.idx` + `.report.json`.

    The output is locked for the whole run (`data.locks`: a second writer of it fails at once,
    naming this one). Returns the report (a dict, also written as JSON)."""
    if (options.split is None) != (options.side is None):
        raise ValueError("--split and --side go together")
    if options.side is not None and options.side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {options.side!r}")
    try:
        paths = record_paths(rec_path)
    except ValueError:
        raise ValueError(f"--out {rec_path}: the output must be a file path ending in .rec, e.g. DIR/A_train.rec") \
            from None
    with exclusive_output(*paths):
        return _convert_locked(bson_path, paths, options, progress)


def _convert_locked(bson_path, paths, options, progress):
    rec_path = paths[0]
    out_dir, name = os.path.dirname(os.path.abspath(rec_path)), os.path.basename(rec_path)[:-4]
    started = time.time()

    # Train or test is decided by the data (`labelled`), not by how a cached index was built.
    index = BsonIndex.load_or_build(bson_path, skip_bad=options.skip_bad, progress=progress)
    if index.labelled and not options.categories:
        raise ValueError(f"{bson_path} has category ids: pass --categories category_names.csv")
    if not index.labelled and (options.max_per_category is not None or options.single_label_md5):
        raise ValueError(f"{bson_path} has no category ids: --max-per-category and --single-label-md5 need them")
    if not index.labelled and options.categories:
        log.info("%s has no category_id (a test file): every label is -1, --categories is not used", bson_path)
    shuffle = options.shuffle if options.shuffle is not None else (index.labelled and options.side != "val")
    inputs = _fingerprint_inputs(index, options, shuffle)
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    if not options.force:
        report = up_to_date(*paths, fingerprint)
        if report is not None:
            log.info("%s is up to date (%d records); --force converts again", rec_path, report["records"])
            shutil.rmtree(os.path.join(out_dir, f".{name}.parts"), ignore_errors=True)   # if a kill left it
            return report

    parts_dir = os.path.join(out_dir, f".{name}.parts")
    try:
        report = _convert_indexed(index, options, shuffle, fingerprint, inputs, paths, parts_dir, progress)
    except StaleIndexError as e:
        if not options.skip_bad:
            raise
        # The file changed behind its index (same size and time): index it again, which
        # sorts out what is bad now, and convert from the new index.
        log.warning("%s; indexing %s again", e, bson_path)
        index = BsonIndex.load_or_build(bson_path, skip_bad=True, kind=index.built_as, progress=progress, rebuild=True)
        report = _convert_indexed(index, options, shuffle, fingerprint, inputs, paths, parts_dir, progress)
    elapsed = time.time() - started
    log.info("%s: %d records, %.1f MB in %.2f s (%.1f MB/s of BSON input)", rec_path, report["records"],
             report["rec_bytes"] / 1e6, elapsed, report["bson_bytes"] / 1e6 / max(elapsed, 1e-9))
    return report


def _convert_indexed(index, options, shuffle, fingerprint, inputs, paths, parts_dir, progress):
    """Plan the records from the index, convert the parts (resuming), write the outputs."""
    selection = _select_images(index, options, progress)
    positions, keep = selection.positions, selection.keep
    plan = Plan.make(index, positions, selection.labels, keep, shuffle, options.seed, int(options.shuffle_block_kb * 1024))
    lengths = index.records["length"][plan.positions]
    parts = plan_parts(lengths, int(options.part_mb * 1024 * 1024))
    part_bytes = np.add.reduceat(lengths.astype(np.int64), [a for a, _ in parts]) if parts else np.zeros(0, np.int64)
    job = Job(index=index, plan=plan, parts=parts, part_bytes=part_bytes, parts_dir=parts_dir)
    workers = options.workers or os.cpu_count()
    name = os.path.basename(paths[0])[:-4]
    log.info("%s: %d products, %d images from %s%s; %s order; %d parts, %d workers", name, len(positions),
             len(plan.record_bytes) if keep is None else int(keep.sum()), index.path,
             f" ({options.side} side of {options.split})" if options.split else "",
             f"shuffled (seed {options.seed})" if shuffle else "file", len(parts), workers)
    job_key = json.dumps({"fingerprint": fingerprint, "parts": parts, "plan": plan.fingerprint()}, sort_keys=True)
    with _naming_the_output(paths[0]):
        done = _prepare_parts_dir(job, job_key)
        merged_path = _run_parts(job, done, workers, name, progress)
        idx_tmp, records, histogram = _write_idx(job, merged_path, selection.n_classes)
        report = ConversionReport(
            fingerprint=fingerprint, inputs=inputs, kind="train" if index.labelled else "test",
            index_problems=index.problems, skipped=selection.skipped, counts=selection.counts,
            products_written=len(positions), records=records, rec_bytes=plan.total_bytes,
            bson_bytes=int(part_bytes.sum()), class_histogram=histogram, seal=seal(merged_path, idx_tmp)).as_json()
        _publish(job, merged_path, idx_tmp, paths, report)
    shutil.rmtree(parts_dir)
    return report


@contextlib.contextmanager
def _naming_the_output(rec_path):
    """A full disk (or quota, or file size limit) while the output is written is reported
    naming the output: the workers' `pwrite` errors name no file."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise OSError(error.errno, f"{rec_path}: {error.strerror}; its finished parts are kept, "
                                   f"run again to resume once there is room") from error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="bson2rec", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bson", help="train.bson or test.bson (indexed on first use, index cached beside it)")
    parser.add_argument("--out", required=True, help="output .rec path; .idx and .report.json go beside it")
    parser.add_argument("--categories", help="category_names.csv (required for a train BSON)")
    parser.add_argument("--split", help="split file of data.split_train_bson (with --side)")
    parser.add_argument("--side", choices=SIDES, help="side of --split to convert")
    parser.add_argument("--unique-md5", action="store_true", help="keep only the first occurrence of each image MD5")
    parser.add_argument("--single-label-md5", metavar="DICT",
                        help="keep only images whose MD5 has exactly one category in this .md5.npz dictionary "
                             "(MD5s it does not hold are dropped, as in the reference)")
    parser.add_argument("--keep-unseen-md5", action="store_true",
                        help="with --single-label-md5: keep the images whose MD5 the dictionary does not hold")
    parser.add_argument("--max-per-category", type=int, metavar="N", help="keep the first N images of each category")
    parser.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                        help="seeded product order (default: on for a labelled side other than val)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="shuffle seed (default 0xC0FFEE)")
    parser.add_argument("--shuffle-block-kb", type=float, default=DEFAULT_SHUFFLE_BLOCK_KB,
                        help="shuffle runs of consecutive products of about this many KB of records "
                             "(default 64; 0: single products)")
    parser.add_argument("--verify-jpeg", action=argparse.BooleanOptionalAction, default=True,
                        help="leave out (with --skip-bad) or stop at pictures that will not decode, as the index "
                             "found them (default; --no-verify-jpeg writes every picture as it is)")
    add_skip_bad_option(parser)
    add_workers_option(parser)
    parser.add_argument("--part-mb", type=float, default=DEFAULT_PART_MB,
                        help="BSON megabytes per part (the unit of parallel work and of resuming)")
    parser.add_argument("--digests", help="cache of per-image MD5s (default: <bson>.image_md5.npz)")
    parser.add_argument("--force", action="store_true", help="convert even when the output is up to date")
    add_common_options(parser)
    args = parser.parse_args(argv)
    if args.max_per_category is not None and args.max_per_category < 1:
        parser.error("--max-per-category must be at least 1")
    if args.keep_unseen_md5 and not args.single_label_md5:
        parser.error("--keep-unseen-md5 goes with --single-label-md5")
    if args.shuffle_block_kb < 0:
        parser.error("--shuffle-block-kb must be at least 0")
    if args.part_mb <= 0:
        parser.error("--part-mb must be positive")
    return args


@command("bson2rec")
def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    fields = {f.name for f in dataclasses.fields(ConvertOptions)}
    options = ConvertOptions(**{k: v for k, v in vars(args).items() if k in fields})
    report = convert(args.bson, args.out, options, progress=args.progress)
    print(json.dumps({k: report[k] for k in ("records", "rec_bytes", "products", "images")}))


if __name__ == "__main__":
    main()
