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
processes (fork, `--workers`, default all cores) convert parts independently, reading each
product by `os.pread` through the offset index (the next 64 products are announced to the
kernel, so that shuffled reads of a file that is not in the page cache overlap) and
writing `part-NNNNN.rec` plus its record offsets atomically in a hidden `.NAME.parts/`
folder. Memory is bounded: a worker holds one product and a 1 MB write buffer; the parent
holds per-product tables (the offset index and the plan: ~60 bytes a product, ~1 byte an
image; with `--unique-md5` or `--single-label-md5` also the 16-byte MD5s of the images). The parent appends finished parts in order to one file
(`os.copy_file_range`), deleting each part once appended, then writes the `.idx` and the report
and renames the three into place. The parts depend only on the inputs and options, never on
the number of workers, so the output is byte-identical for any `--workers`; a run killed at
any point resumes from the parts and the merge progress already on disk and produces the same
files. A finished output whose report matches the inputs and options is left alone
(`--force` converts again).

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
import os
import shutil
import time

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_open, atomic_path, write_json
from data.bson_index import BsonIndex
from data.categories import CategoryMap, UnknownCategoryError
from data.errors import DataInputError
from data.md5_dict import ImageDigests, Md5Dictionary, first_image_rows, first_occurrences, image_rows
from data.parallel import ordered_map
from data.recordio import ImageRecordWriter, write_idx
from data.split_train_bson import SIDES, Split, file_signature

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1
DEFAULT_SEED = 0xC0FFEE
DEFAULT_PART_MB = 64
TEST_LABEL = -1.0
WRITE_BUFFER = 1 << 20
PREFETCH = 64               # products announced to the kernel ahead of reading them
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


def plan_parts(lengths, part_bytes):
    """Cut a sequence of document lengths into consecutive (start, stop) parts of ~part_bytes."""
    ends = np.cumsum(lengths, dtype=np.int64)
    if not len(ends):
        return []
    n_parts = max(1, int(-(-ends[-1] // part_bytes)))
    cuts = np.searchsorted(ends, np.arange(1, n_parts) * ends[-1] / n_parts, side="left") + 1
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

    def part_path(self, part, suffix):
        return os.path.join(self.parts_dir, f"part-{part:05d}{suffix}")


def _jpeg_decodes(jpeg):
    import cv2
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None


def _part_images(job, start, stop, skipped):
    """Yield `(label, product_id, image_number, jpeg)` for the kept images of products[start:stop].

    A product that cannot be read or (with `verify_jpeg`) an image that does not decode
    raises `DataInputError`, or with `skip_bad` is appended to `skipped` as ("product" or
    "image", problem dict)."""
    index = job.index
    positions = job.products[start:stop]
    # Announce reads ahead unless the part is one contiguous run (sequential: the kernel's
    # readahead already covers it, and announcing cached pages costs a few microseconds each).
    prefetch = len(positions) > 1 and not np.all(np.diff(positions) == 1)
    first_keep = (job.keep_first[start:stop] - job.keep_first[start]).tolist()
    keep = job.keep[job.keep_first[start]:job.keep_first[stop]].tolist() if job.keep is not None else None
    for i, (pos, label, product_id, k0) in enumerate(zip(positions.tolist(), job.labels[start:stop].tolist(),
                                                          index.product_ids[positions].tolist(), first_keep)):
        if prefetch and i % PREFETCH == 0:
            index.prefetch(positions[i + (PREFETCH if i else 0):i + 2 * PREFETCH])
        try:
            pictures = index.pictures(pos)
        except DataInputError as e:
            if not job.skip_bad:
                raise
            skipped.append(("product", e.as_dict()))
            continue
        for number, jpeg in enumerate(pictures):
            if keep is not None and not keep[k0 + number]:
                continue
            if job.verify_jpeg and not _jpeg_decodes(jpeg):
                err = DataInputError(index.path, index.records.item(pos)[0], product_id,
                                     f"imgs[{number}] is not a decodable JPEG ({len(jpeg)} bytes)")
                if not job.skip_bad:
                    raise err
                skipped.append(("image", err.as_dict()))
                continue
            yield label, product_id, number, jpeg


def convert_part(job, part):
    """Worker: write part `part` as `part-NNNNN.rec` + `.npz` (record offsets, classes, skips)."""
    start, stop = job.parts[part]
    offsets, labels, skipped, product_ids = [], [], [], set()
    with atomic_path(job.part_path(part, ".rec")) as tmp:
        with open(tmp, "wb", buffering=WRITE_BUFFER) as f:
            writer = ImageRecordWriter(f)
            for label, product_id, number, jpeg in _part_images(job, start, stop, skipped):
                offsets.append(writer.write(label, product_id, number, jpeg))
                labels.append(label)
                product_ids.add(product_id)
    classes, class_counts = np.unique(np.asarray(labels, np.float32), return_counts=True)
    kinds = collections.Counter(kind for kind, _ in skipped)
    meta = {"records": len(offsets), "products": len(product_ids), "rec_bytes": writer.offset,
            "skipped": [problem for _, problem in skipped],
            "products_skipped": kinds["product"], "images_skipped": kinds["image"]}
    with atomic_path(job.part_path(part, ".npz")) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, offsets=np.asarray(offsets, np.uint64), classes=classes.astype(np.int64),
                     class_counts=class_counts.astype(np.int64),
                     meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return part, meta


def _load_part(job, part):
    with np.load(job.part_path(part, ".npz")) as z:
        return json.loads(z["meta"].tobytes().decode()), z["offsets"], z["classes"], z["class_counts"]


# --------------------------------------------------------------------------------------------
# Resuming and merging (parent process)
# --------------------------------------------------------------------------------------------
def _prepare_parts_dir(job, job_key):
    """Reuse the parts of an interrupted run of the same job; returns (done parts, merged count).

    `merged.rec` holds parts 0..m-1 exactly when their `.npz` exists and their `.rec` is gone
    (a part's `.rec` is deleted only once it has been appended)."""
    key_path = os.path.join(job.parts_dir, "job.json")
    if not os.path.exists(key_path) or _read_text(key_path) != job_key:
        shutil.rmtree(job.parts_dir, ignore_errors=True)
        os.makedirs(job.parts_dir)
        with atomic_open(key_path, "w", encoding="utf-8") as f:
            f.write(job_key)
        return set(), 0
    for stale in glob.glob(os.path.join(job.parts_dir, ".*.tmp")):
        os.unlink(stale)
    done = {p for p in range(len(job.parts)) if os.path.exists(job.part_path(p, ".npz"))}
    merged, merged_bytes = 0, 0
    while merged in done and not os.path.exists(job.part_path(merged, ".rec")):
        merged_bytes += _load_part(job, merged)[0]["rec_bytes"]
        merged += 1
    merged_path = os.path.join(job.parts_dir, "merged.rec")
    size = os.path.getsize(merged_path) if os.path.exists(merged_path) else 0
    if size < merged_bytes:     # cannot happen after a kill; a crash may lose unsynced data
        log.warning("%s: merged output shorter than its parts: converting again", job.parts_dir)
        shutil.rmtree(job.parts_dir)
        return _prepare_parts_dir(job, job_key)
    with open(merged_path, "ab") as f:
        f.truncate(merged_bytes)   # drop a partly appended part
    done = {p for p in done if p < merged or os.path.exists(job.part_path(p, ".rec"))}
    log.info("resuming: %d of %d parts done, %d merged", len(done), len(job.parts), merged)
    return done, merged


def _read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _append_file(src_path, dst_fd):
    """Append the file at `src_path` to the end of `dst_fd`, copying in the kernel when possible.

    (`copy_file_range` refuses a destination opened with O_APPEND: `dst_fd` must not be.)"""
    dst_end = os.lseek(dst_fd, 0, os.SEEK_END)
    with open(src_path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src.fileno(), dst_fd, min(size - copied, COPY_CHUNK))
                if not n:
                    raise OSError("copy_file_range made no progress")
                copied += n
        except OSError:   # e.g. not supported between these file systems: copy in user space
            src.seek(copied)
            os.lseek(dst_fd, dst_end + copied, os.SEEK_SET)
            while chunk := src.read(16 << 20):
                os.write(dst_fd, chunk)


def _run_parts(job, done, merged, workers, name, progress=True):
    """Convert the missing parts and append every part from `merged` on to `merged.rec`."""
    merged_path = os.path.join(job.parts_dir, "merged.rec")
    todo = [p for p in range(len(job.parts)) if p not in done]
    out = os.open(merged_path, os.O_WRONLY | os.O_CREAT, 0o666)
    results = ordered_map(convert_part, job, todo, workers)
    try:
        with tqdm(total=int(job.part_bytes.sum()), initial=int(job.part_bytes[:merged].sum()), unit="B",
                  unit_scale=True, desc=name, disable=not progress) as bar:
            for part in range(merged, len(job.parts)):
                if part not in done:
                    finished, _ = next(results)
                    assert finished == part, (finished, part)
                _append_file(job.part_path(part, ".rec"), out)
                os.unlink(job.part_path(part, ".rec"))
                bar.update(int(job.part_bytes[part]))
    finally:
        results.close()
        os.close(out)
    return merged_path


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
            write_idx(f, (offsets + np.uint64(base)).tolist(), first_key=records)
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
    parts = plan_parts(lengths, int(options.part_mb * 1024 * 1024))
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
    done, merged = _prepare_parts_dir(job, job_key)
    merged_path = _run_parts(job, done, merged, workers, name, progress)
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
