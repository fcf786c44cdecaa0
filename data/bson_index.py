"""Offset index of a Kaggle BSON file: one sequential pass, then random access by position or id.

One pass over the file (`data.bson_scan`) reads the few header bytes of each document
(`_id`, `category_id`, where each picture of `imgs` lies) without decoding or copying the
JPEG bytes. The result is a compact numpy table (about 30 bytes a product and 4 bytes an
image, so the 7 M-product `train.bson` indexes into ~260 MB whatever its 58 GB) that is
cached beside the file (`data.npz_store`) and gives random access (`os.pread`, safe across
`fork`) and byte-balanced ranges for parallel readers. It also holds each picture's length
and the per-picture facts that later stages asked the same pass to gather (`PictureFact`s,
by default `data.picture_facts.CONVERSION_FACTS`: what the conversion to RecordIO needs to
place every record before writing any, and the pictures that will not decode), each a sparse
column under the fact's name: the index knows none of them, and a cache without a column
asked for is built again.

Bad input (see `data.bson_scan`, and a duplicate `_id`) raises `BsonFormatError` naming file,
offset and product; with `skip_bad=True` the problem is logged and recorded in
`index.problems` instead, and every good document around it is kept.

    python -m data.bson_index train.bson            # build (or load) and summarise
"""
import argparse
import json
import logging
import os

import numpy as np

from data.bson_layout import NO_CATEGORY, kaggle_picture_spans
from data.bson_scan import CHUNK_BYTES, KINDS, PictureTable, problem_record, scan_bson
from data.cli import add_common_options, add_skip_bad_option, command, setup_logging
from data.errors import BsonFormatError, SkipBad, StaleIndexError
from data.npz_store import cached_or_built, file_signature, load_cached, same_file_version, save_npz
from data.picture_facts import CONVERSION_FACTS
from data.rows import first_rows, image_rows, sparse_lookup

log = logging.getLogger(__name__)

INDEX_VERSION = 4              # 2: picture lengths and magic words; 3: undecodable pictures, negative ids; 4: facts by name
INDEX_DTYPE = np.dtype([       # field order = the order `scan_bson` yields them
    ("offset", "<i8"),
    ("length", "<i4"),
    ("product_id", "<i8"),
    ("n_images", "<i2"),
    ("category_id", "<i8"),   # -1 when the document has none (test.bson)
])


def _drop_duplicates(path, records, bad):
    """Mask of the records to keep: the first document of each `_id`; later ones are errors
    (handled by `bad`, a `SkipBad`)."""
    ids = records["product_id"]
    _, first = np.unique(ids, return_index=True)
    if len(first) == len(ids):
        return np.ones(len(ids), bool)
    keep = np.zeros(len(ids), bool)
    keep[first] = True
    first_offset = dict(zip(ids[first].tolist(), records["offset"][first].tolist()))
    for row in bad.to_handle(records[~keep]):
        pid = int(row["product_id"])
        err = BsonFormatError(path, int(row["offset"]), pid,
                              f"duplicate _id (first seen at offset {first_offset[pid]})")
        bad.handle(err, problem_record(err, int(row["offset"]) + int(row["length"]), [pid]))
    return keep




def index_path_for(path):
    return path + ".index.npz"


class BsonIndex:
    """Positions of every good product of a BSON file, in file order, with random access,
    the length of every picture (`picture_lengths`; image `j` of the product at position `p`
    is row `first_image[p] + j`) and the per-picture facts the pass gathered for later stages
    (`picture_fact`; by default `data.picture_facts.CONVERSION_FACTS`), each held as the
    (rows, values) of its non-zero pictures in `facts`, by name."""

    def __init__(self, path, records, kind, problems=(), picture_lengths=None, facts=None, built_as=None):
        self.path = path
        self.records = records
        self.kind = kind
        self.built_as = kind if built_as is None else built_as   # the `kind` asked of `build` (see `serves`)
        self.problems = list(problems)
        self.picture_lengths = picture_lengths
        self.facts = {} if facts is None else facts    # fact name -> (rows, values) of its non-zero pictures
        self._fd = None
        self._fd_pid = None
        self._positions = None
        self._first_image = None

    # -- building, saving, loading -------------------------------------------------------
    @classmethod
    def build(cls, path, skip_bad=False, kind="auto", progress=False, facts=CONVERSION_FACTS):
        """Index `path` in one sequential pass (see `scan_bson`), gathering `facts` (`PictureFact`s)."""
        problems, blocks, rows = [], [], []
        pictures = PictureTable(facts)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=f"index {os.path.basename(path)}")
        done = 0
        for row in scan_bson(path, skip_bad=skip_bad, kind=kind, problems=problems, pictures=pictures):
            rows.append(row)
            if len(rows) == 65536:   # numpy blocks keep memory at ~30 bytes a product
                blocks.append(np.array(rows, dtype=INDEX_DTYPE))
                rows.clear()
                if bar is not None:
                    end = row[0] + row[1]
                    bar.update(end - done)
                    done = end
        blocks.append(np.array(rows, dtype=INDEX_DTYPE) if rows else np.zeros(0, INDEX_DTYPE))
        if bar is not None:
            bar.update(bar.total - done)
            bar.close()
        records = np.concatenate(blocks)
        lengths = np.frombuffer(pictures.lengths, np.uint32) if len(pictures.lengths) else np.zeros(0, np.uint32)
        sparse = [(np.array(rows, np.int64), np.array(values, fact.dtype))
                  for fact, (rows, values) in zip(pictures.facts, pictures.sparse)]
        first_category = records["category_id"][0] if len(records) else NO_CATEGORY
        keep = _drop_duplicates(path, records, SkipBad(skip_bad, log, problems))
        if not keep.all():
            keep_images = np.repeat(keep, records["n_images"].astype(np.int64))
            new_rows = np.cumsum(keep_images) - 1
            records, lengths = records[keep], lengths[keep_images]
            sparse = [(new_rows[rows[keep_images[rows]]], values[keep_images[rows]]) for rows, values in sparse]
        resolved = kind if kind != "auto" else "test" if first_category == NO_CATEGORY else "train"
        return cls(path, records, resolved, problems, lengths.copy(),
                   {fact.name: columns for fact, columns in zip(pictures.facts, sparse)}, built_as=kind)

    def save(self, index_path=None):
        index_path = index_path or index_path_for(self.path)
        meta = dict(file_signature(self.path), version=INDEX_VERSION, kind=self.kind, built_as=self.built_as,
                    problems=self.problems, facts=sorted(self.facts))
        arrays = {"records": self.records, "picture_lengths": self.picture_lengths}
        for name, (rows, values) in self.facts.items():
            arrays.update({f"fact_{name}_rows": rows, f"fact_{name}_values": values})
        return save_npz(index_path, meta, arrays)

    @classmethod
    def load(cls, path, index_path=None, facts=CONVERSION_FACTS):
        """The cached index of `path`, or None when absent, stale (file changed), damaged or
        without one of `facts`."""
        def valid(meta):
            return meta.get("version") == INDEX_VERSION and same_file_version(meta, path) and \
                {fact.name for fact in facts} <= set(meta["facts"])

        found = load_cached(index_path or index_path_for(path), valid, "index")
        if found is None:
            return None
        meta, z = found
        columns = {name: (z[f"fact_{name}_rows"], z[f"fact_{name}_values"]) for name in meta["facts"]}
        return cls(path, z["records"], meta["kind"], meta["problems"], z["picture_lengths"], columns, meta["built_as"])

    @classmethod
    def load_or_build(cls, path, skip_bad=False, kind="auto", progress=False, index_path=None, rebuild=False,
                      facts=CONVERSION_FACTS):
        """The cached index when valid (and not `rebuild`), else build it and cache it beside
        the file. One process builds at a time: another that needs the index meanwhile (the
        conversions of several sides of one train.bson started together) waits, then loads
        what was built (`data.atomic.build_once`).

        A cached index that recorded problems is only reused with `skip_bad` (without it,
        the build runs again so that the first problem raises)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such BSON file")

        def cached():
            index = None if rebuild else cls.load(path, index_path, facts)
            return index if index is not None and (skip_bad or not index.problems) and \
                index.serves(kind) else None

        return cached_or_built(index_path or index_path_for(path), cached,
                               lambda: cls.build(path, skip_bad=skip_bad, kind=kind, progress=progress, facts=facts),
                               lambda index: index.save(index_path), f"the index of {path}")

    def serves(self, kind):
        """Whether this index is what `build(kind=kind)` would give: one built with "auto" serves
        "auto" and the kind it resolved to; one built with a forced kind serves only that kind
        (a `--kind test` index of a train file must not pass for an automatic one)."""
        return kind == self.built_as or (self.built_as == "auto" and kind == self.kind)

    # -- lookups ---------------------------------------------------------------------------
    def __len__(self):
        return len(self.records)

    @property
    def product_ids(self):
        return self.records["product_id"]

    @property
    def category_ids(self):
        return self.records["category_id"]

    @property
    def labelled(self):
        """True when products carry category ids (a training file), whatever `kind` the index
        was built as (`--kind test` keeps the category ids of a train file)."""
        return bool(np.any(self.category_ids != NO_CATEGORY))

    @property
    def n_images(self):
        return self.records["n_images"]

    @property
    def first_image(self):
        """(n_products + 1,) int64: the images of the product at position p are rows
        first_image[p]:first_image[p+1] of a per-image table in index order."""
        if self._first_image is None:
            self._first_image = first_rows(self.n_images)
        return self._first_image

    def image_rows(self, positions):
        """Rows (per `first_image`) of the images of the products at `positions`, in that order."""
        return image_rows(self.first_image, positions)

    def picture_fact(self, fact, rows):
        """The values of `fact` (a `PictureFact` the index was built with) for the pictures of
        image `rows` (mostly 0)."""
        return sparse_lookup(*self.facts[fact.name], rows)

    def position_of(self, product_id):
        if self._positions is None:
            self._positions = {pid: i for i, pid in enumerate(self.product_ids.tolist())}
        try:
            return self._positions[int(product_id)]
        except KeyError:
            raise KeyError(f"{self.path}: no product with _id {product_id}") from None

    def positions_of(self, product_ids):
        """Vectorised `position_of` for an array of ids."""
        ids = np.asarray(product_ids, np.int64)
        order = np.argsort(self.product_ids, kind="stable")
        found = np.searchsorted(self.product_ids, ids, sorter=order)
        found = np.minimum(found, len(order) - 1) if len(order) else found
        pos = order[found] if len(order) else np.zeros(0, np.int64)
        missing = (len(order) == 0) | (self.product_ids[pos] != ids) if len(ids) else np.zeros(0, bool)
        if np.any(missing):
            raise KeyError(f"{self.path}: no product with _id {int(ids[np.argmax(missing)])}")
        return pos

    # -- reading ---------------------------------------------------------------------------
    def _file(self):
        # One descriptor per process: `os.pread` has no shared file position, so a forked
        # child may even reuse it, but reopening keeps descriptors private to a process.
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd, self._fd_pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read_raw(self, pos):
        """The raw BSON bytes of the product at position `pos`."""
        offset, length, product_id = self.records.item(pos)[:3]
        return self._pread(offset, length, product_id)

    def _pread(self, offset, length, product_id):
        data = os.pread(self._file(), length, offset)
        if len(data) != length:
            raise StaleIndexError(self.path, offset, product_id, "file is shorter than its index")
        return data

    def _runs(self, positions):
        """(offsets, lengths, bounds) of the documents at `positions`: runs[k] = positions
        bounds[k]:bounds[k+1] lie one after another in the file (one read covers them)."""
        rows = self.records[positions]
        offsets, lengths = rows["offset"], rows["length"].astype(np.int64)
        breaks = np.flatnonzero(offsets[1:] != offsets[:-1] + lengths[:-1]) + 1
        return offsets, lengths, [0, *breaks.tolist(), len(rows)]

    def prefetch(self, positions):
        """Ask the kernel to start reading the products at `positions` (posix_fadvise WILLNEED).

        Random reads of a file that is not in the page cache wait for the disk one at a time;
        announcing the next few dozen products keeps many reads in flight (several times
        faster on an SSD). Products that follow each other in the file are announced as one
        range. No-op where posix_fadvise does not exist."""
        if not hasattr(os, "posix_fadvise") or not len(positions):
            return
        fd = self._file()
        offsets, lengths, bounds = self._runs(positions)
        ends = (offsets + lengths).tolist()
        offsets = offsets.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            os.posix_fadvise(fd, offsets[a], ends[b - 1] - offsets[a], os.POSIX_FADV_WILLNEED)

    def read_into(self, positions, buffer):
        """Read the documents at `positions` one after another into `buffer` (writable, at least
        their total length), with one `pread` per run of documents that follow each other in
        the file; returns the int64 start of each document in `buffer`.

        A file shorter than its index raises `BsonFormatError` (naming the run's first product)."""
        offsets, lengths, bounds = self._runs(positions)
        starts = first_rows(lengths)
        if starts[-1] > len(buffer):
            raise ValueError(f"buffer of {len(buffer)} bytes for {starts[-1]} bytes of documents")
        fd, view = self._file(), memoryview(buffer)
        begins, offsets = starts.tolist(), offsets.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            begin, end, offset = begins[a], begins[b], offsets[a]
            done = 0
            while done < end - begin:
                n = os.preadv(fd, [view[begin + done:end]], offset + done)
                if not n:
                    raise StaleIndexError(self.path, offset, int(self.records["product_id"][positions[a]]),
                                          "file is shorter than its index")
                done += n
        return starts[:-1]

    def read(self, pos):
        """The decoded document (pymongo's `bson.decode`) at position `pos`."""
        import bson
        return bson.decode(self.read_raw(pos))

    def get(self, product_id):
        return self.read(self.position_of(product_id))

    def pictures(self, pos, raw=None):
        """The JPEG bytes of each image of the product at `pos`, in `imgs` order.

        `raw` is the document's bytes when already read (e.g. from `iter_raw`). A Kaggle-layout
        document is sliced without decoding (`data.bson_layout.kaggle_picture_spans`), any other decoded with
        pymongo. A document that no longer matches its index entry (the file changed) raises
        `BsonFormatError`."""
        offset, length, product_id, n_images, category_id = self.records.item(pos)   # one cheap row fetch
        if raw is None:
            raw = self._pread(offset, length, product_id)
        fast = kaggle_picture_spans(raw, 0, length) if len(raw) == length else None
        if fast is not None:
            found_id, found_category, spans = fast
            pictures = [bytes(raw[a:b]) for a, b in spans]
        else:
            import bson
            try:
                doc = bson.decode(raw)
                pictures = [img["picture"] for img in doc["imgs"]]
            except (bson.errors.BSONError, KeyError, TypeError) as e:
                raise StaleIndexError(self.path, offset, product_id, f"cannot decode the product: {e}") from None
            found_id, found_category = doc.get("_id"), doc.get("category_id", NO_CATEGORY)
        if found_id != product_id or len(pictures) != n_images or found_category != category_id:
            raise StaleIndexError(self.path, offset, product_id,
                                  "document differs from its index entry")
        return pictures

    def iter_raw(self, start=0, stop=None, chunk_bytes=CHUNK_BYTES):
        """Yield `(pos, raw_bytes)` for positions [start, stop) with large sequential reads."""
        stop = len(self) if stop is None else min(stop, len(self))
        offsets, lengths = self.records["offset"], self.records["length"]
        i = start
        while i < stop:
            # Read a run of consecutive documents of about chunk_bytes in one call.
            begin = int(offsets[i])
            j = int(np.searchsorted(offsets, begin + chunk_bytes, side="left", sorter=None))
            j = max(min(j, stop), i + 1)
            end = int(offsets[j - 1] + lengths[j - 1])
            block = os.pread(self._file(), end - begin, begin)
            if len(block) != end - begin:
                raise StaleIndexError(self.path, begin, int(self.records["product_id"][i]),
                                      "file is shorter than its index")
            for k in range(i, j):
                lo = int(offsets[k]) - begin
                yield k, block[lo:lo + int(lengths[k])]
            i = j

    def iter_documents(self, start=0, stop=None):
        """Yield `(pos, document)` decoded with pymongo's `bson`."""
        import bson
        for pos, raw in self.iter_raw(start, stop):
            yield pos, bson.decode(raw)

    def partition(self, n_parts):
        """`n_parts` contiguous `(start, stop)` position ranges holding about equal bytes."""
        if n_parts < 1:
            raise ValueError("n_parts must be >= 1")
        cum = np.cumsum(self.records["length"], dtype=np.int64)
        total = int(cum[-1]) if len(cum) else 0
        cuts = [0] + [int(np.searchsorted(cum, total * k / n_parts, side="left")) + 1
                      for k in range(1, n_parts)] + [len(self)]
        cuts = np.minimum(np.maximum.accumulate(cuts), len(self))
        return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]

    def close(self):
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def summary(self):
        n_img = self.n_images.astype(np.int64)
        counts = np.bincount(n_img, minlength=5)[1:]
        out = {
            "path": self.path, "kind": self.kind, "products": len(self), "images": int(n_img.sum()),
            "images_per_product": {str(k): int(c) for k, c in enumerate(counts, 1) if c},
            "bytes": int(self.records["length"].sum()), "problems": len(self.problems),
            **{fact.summary_key: len(self.facts[fact.name][0]) for fact in CONVERSION_FACTS
               if fact.summary_key and fact.name in self.facts},
        }
        if self.kind == "train":
            out["categories"] = int(len(np.unique(self.category_ids)))
        return out


@command("bson_index")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="bson_index", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bson", nargs="+", help="BSON file(s) to index")
    add_skip_bad_option(parser, "report and skip bad documents instead of stopping at the first one")
    parser.add_argument("--kind", choices=KINDS, default="auto",
                        help="train requires category_id in every product (default: decided by the first one)")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached index")
    add_common_options(parser)
    args = parser.parse_args(argv)
    setup_logging()
    for path in args.bson:
        index = BsonIndex.load_or_build(path, skip_bad=args.skip_bad, kind=args.kind, progress=args.progress,
                                        rebuild=args.rebuild)
        print(json.dumps(index.summary(), indent=2))
        for problem in index.problems:
            print(f"skipped: {problem['path']}: offset {problem['offset']}, product {problem['product_id']}: "
                  f"{problem['reason']}")


if __name__ == "__main__":
    main()
