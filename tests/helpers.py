"""Helpers of the test suite, in one importable place: ``from helpers import ...``.

Framework-free (neither MXNet nor PyTorch is imported here), so that both test suites
(``pytest tests --ignore=tests/torch`` and ``pytest tests/torch``) use them. Every file is
written with the project's own writers (``data.recordio``) or pymongo's ``bson``.

* The real Kaggle sample: `REAL_DIR` (``CDISCOUNT_REAL_DIR``, default ``../shared/real``).
* BSON files: `write_bson`, `read_docs`, `make_products` (1-4 JPEGs per product, from
  `jpeg_bytes`, in `CATEGORIES`), `with_magic_words`, and `write_categories` (their
  category_names.csv).
* Synthetic pictures: `jpeg_bytes` (a disc on a flat colour, by seed: any real JPEG),
  `draw_image` (a learnable class task: each class its own colours and shape) and
  `marker_in_scan` (a damaged picture only some decoders take).
* Indexed RecordIO files of data.bson2rec's contract: `write_pictures_rec` (bytes as they
  are), `write_rec` (BGR arrays, stored as JPEG), `write_synthetic_rec`,
  `write_synthetic_dataset` (``A_train``/``A_val`` of the class task), `write_report` (the
  conversion report's fields that training checks), `damage_record` (bytes of a record
  changed after its conversion), and `read_sequentially`, `read_records` (MXNet's own
  readers, imported only when called).
* Processes: `still_running` (which of some processes have not ended after a while, a
  zombie counting as ended).

The MXNet-side helpers (a run folder of real checkpoints) are in ``recfixtures.py``; the
prediction world (tiny trained runs) is ``predict_world.py``; ``conftest.py`` holds the
fixtures.
"""
import copy
import json
import os
import struct
import time

import bson
import cv2
import numpy as np
import psutil

from data.recordio import record_paths
from data.recordio import MAGIC_BYTES as RECORDIO_MAGIC
from data.recordio import ImageRecordWriter, read_headers, read_idx, write_idx

REAL_DIR = os.environ.get("CDISCOUNT_REAL_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "real"))
REAL_TRAIN_EXAMPLE = os.path.join(REAL_DIR, "train_example.bson")
REAL_CATEGORY_NAMES = os.path.join(REAL_DIR, "category_names.csv")


def jpeg_bytes(seed, size=180):
    """A real 180x180 JPEG whose content depends on `seed`."""
    rng = np.random.RandomState(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.randint(0, 256, 3)
    cv2.circle(img, (int(rng.randint(20, 160)), int(rng.randint(20, 160))), 30, tuple(int(v) for v in rng.randint(0, 256, 3)), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def marker_in_scan(jpeg):
    """`jpeg` with a DHT marker (``FF C4``) written over its scan data 5 bytes in: the
    structural check (``data.jpeg``) passes it, OpenCV decodes it (libjpeg warns "Corrupt JPEG
    data: premature end of data segment"), torchvision's libjpeg-turbo refuses it ("Bogus
    Huffman table definition")."""
    sos = jpeg.index(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")
    return jpeg[:scan + 5] + b"\xff\xc4" + jpeg[scan + 7:]


def file_bytes(*paths):
    return [open(p, "rb").read() for p in paths]


def read_sequentially(rec_path):
    """[(label, id, id2, image)] of every record of `rec_path`, read by MXNet's sequential
    reader (without the `.idx`): what the project's RecordIO files are checked against."""
    import mxnet as mx     # only the tests that compare with MXNet need it
    reader = mx.recordio.MXRecordIO(str(rec_path), "r")
    out = []
    while (item := reader.read()) is not None:
        header, image = mx.recordio.unpack(item)
        out.append((header.label, header.id, header.id2, image))
    reader.close()
    return out


CATEGORIES = [1000000000 + 17 * c for c in range(5)]      # make_products' default categories


def write_categories(path, categories=CATEGORIES):
    """A category_names.csv whose row order (= class ids) is not the id order."""
    rows = [f"{c},L1 {c % 2},L2 {c % 3},L3 {c}" for c in reversed(categories)]
    path.write_text("category_id,category_level1,category_level2,category_level3\n" + "\n".join(rows) + "\n")
    return str(path)


def read_records(rec_path):
    """[(label, product_id, image_number, image bytes)] in key order, read by MXNet through the .idx."""
    import mxnet as mx     # only the tests that compare with MXNet need it
    _, idx_path, _ = record_paths(str(rec_path))
    reader = mx.recordio.MXIndexedRecordIO(idx_path, str(rec_path), "r")
    try:
        assert reader.keys == list(range(len(reader.keys)))
        out = []
        for key in reader.keys:
            header, image = mx.recordio.unpack(reader.read_idx(key))
            out.append((header.label, header.id, header.id2, image))
        return out
    finally:
        reader.close()


def write_bson(path, docs):
    """Write documents (dicts) as a Kaggle-style BSON file: a plain concatenation."""
    with open(path, "wb") as f:
        for doc in docs:
            f.write(bson.encode(doc))
    return path


def make_products(n, n_categories=5, test=False, first_id=0, seed=0, categories=None):
    """`n` products with 1-4 JPEGs each; ids ascending with gaps, like the Kaggle file."""
    rng = np.random.RandomState(seed)
    categories = categories or [1000000000 + 17 * c for c in range(n_categories)]
    docs, pid = [], first_id
    for i in range(n):
        doc = {"_id": pid}
        if not test:
            doc["category_id"] = categories[i % len(categories)]
        doc["imgs"] = [{"picture": jpeg_bytes(seed * 100003 + pid * 7 + k)} for k in range(1 + rng.randint(4))]
        docs.append(doc)
        pid += 1 + rng.randint(3)
    return docs


def with_magic_words(docs, seed=0):
    """Copies of `docs` whose pictures hold RecordIO's magic word at aligned and unaligned
    offsets, at their very end, and as their whole content."""
    docs = copy.deepcopy(docs)
    rng = np.random.RandomState(seed)
    for d, doc in enumerate(docs):
        for k, img in enumerate(doc["imgs"]):
            picture = bytearray(img["picture"])
            choice = (d + k) % 5
            if choice == 1:
                for _ in range(3):
                    at = 4 * rng.randint(len(picture) // 4 - 1)              # aligned: a split
                    picture[at:at + 4] = RECORDIO_MAGIC
            elif choice == 2:
                at = 4 * rng.randint(len(picture) // 4 - 1) + 1 + rng.randint(3)   # unaligned: none
                picture[at:at + 4] = RECORDIO_MAGIC
            elif choice == 3:
                picture = picture[:len(picture) & ~3] + RECORDIO_MAGIC + picture[:rng.randint(4)]   # near the end
            elif choice == 4 and d % 3 == 0:
                picture = bytearray(RECORDIO_MAGIC * (1 + rng.randint(6)))
            img["picture"] = bytes(picture)
    return docs


def read_docs(path):
    with open(path, "rb") as f:
        return list(bson.decode_file_iter(f))


SHAPES = ("square", "disc", "triangle", "hbar", "vbar", "ring", "cross", "diamond")


def _class_colours(num_classes):
    """Background and foreground BGR colours per class, far apart in hue."""
    hues = (np.arange(num_classes) * 180 // num_classes).astype(np.uint8)
    hsv_bg = np.stack([hues, np.full_like(hues, 90), np.full_like(hues, 200)], axis=1)[None]
    hsv_fg = np.stack([(hues + 90) % 180, np.full_like(hues, 255), np.full_like(hues, 90)], axis=1)[None]
    background = cv2.cvtColor(hsv_bg.astype(np.uint8), cv2.COLOR_HSV2BGR)[0]
    foreground = cv2.cvtColor(hsv_fg.astype(np.uint8), cv2.COLOR_HSV2BGR)[0]
    return background.astype(int), foreground.astype(int)


def draw_image(class_id, rng, num_classes, size=32):
    """One BGR uint8 image of class `class_id`."""
    background, foreground = _class_colours(num_classes)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.clip(background[class_id] + rng.randint(-25, 26, 3), 0, 255)
    colour = tuple(int(v) for v in np.clip(foreground[class_id] + rng.randint(-25, 26, 3), 0, 255))
    r = int(rng.randint(size // 6, size // 3))
    cx, cy = (int(v) for v in rng.randint(r, size - r, 2))
    shape = SHAPES[class_id % len(SHAPES)]
    if shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    elif shape == "disc":
        cv2.circle(img, (cx, cy), r, colour, -1)
    elif shape == "triangle":
        cv2.fillPoly(img, [np.array([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], np.int32)], colour)
    elif shape == "hbar":
        cv2.rectangle(img, (cx - r, cy - r // 3), (cx + r, cy + r // 3), colour, -1)
    elif shape == "vbar":
        cv2.rectangle(img, (cx - r // 3, cy - r), (cx + r // 3, cy + r), colour, -1)
    elif shape == "ring":
        cv2.circle(img, (cx, cy), r, colour, max(1, r // 3))
    elif shape == "cross":
        cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), colour, max(1, r // 3))
        cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), colour, max(1, r // 3))
    else:
        cv2.fillPoly(img, [np.array([(cx, cy - r), (cx - r, cy), (cx, cy + r), (cx + r, cy)], np.int32)], colour)
    noise = rng.randint(-12, 13, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def write_rec(prefix, labels, product_ids, image_numbers, images):
    """Write ``prefix.rec`` + ``prefix.idx``; `images` are BGR arrays, stored as JPEG."""
    pictures = [cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for img in images]
    return write_pictures_rec(prefix, labels, product_ids, image_numbers, pictures)


def write_pictures_rec(prefix, labels, product_ids, image_numbers, pictures):
    """Write ``prefix.rec`` + ``prefix.idx`` holding the bytes `pictures` as they are (bad
    ones too), with data.recordio's writer, as data.bson2rec writes them."""
    rec = prefix + ".rec"
    with open(rec, "wb") as f:
        writer = ImageRecordWriter(f)
        offsets = [writer.write(float(label), int(pid), int(number), picture)
                   for label, pid, number, picture in zip(labels, product_ids, image_numbers, pictures)]
    with open(prefix + ".idx", "w") as f:
        write_idx(f, offsets)
    return rec


def synthetic_pictures(labels, seed, num_classes, size=32):
    """JPEG bytes of one synthetic image per label."""
    rng = np.random.RandomState(seed)
    return [cv2.imencode(".jpg", draw_image(int(c), rng, num_classes, size))[1].tobytes() for c in labels]


def synthetic_products(num_products, num_classes, seed, first_product_id=0, max_images=3):
    """(labels, product_ids, image_numbers) of `num_products` products with 1..max_images images."""
    rng = np.random.RandomState(seed)
    labels, pids, numbers = [], [], []
    pid = first_product_id
    for _ in range(num_products):
        label = int(rng.randint(num_classes))
        for number in range(1 + int(rng.randint(max_images))):
            labels.append(label)
            pids.append(pid)
            numbers.append(number)
        pid += 1 + int(rng.randint(3))
    return np.array(labels), np.array(pids, np.int64), np.array(numbers)


def write_synthetic_rec(prefix, num_products, num_classes, seed, size=32, first_product_id=0):
    """A synthetic `.rec`/`.idx` pair; returns (rec path, labels, product_ids)."""
    labels, pids, numbers = synthetic_products(num_products, num_classes, seed, first_product_id)
    rng = np.random.RandomState(seed + 7919)
    images = [draw_image(int(c), rng, num_classes, size) for c in labels]
    return write_rec(prefix, labels, pids, numbers, images), labels, pids


def write_synthetic_dataset(folder, num_classes=6, train_products=300, val_products=80, size=32, seed=0):
    """``A_train.rec`` and ``A_val.rec`` (+ ``.idx``) in `folder`, disjoint product ids.

    Returns a dict with the two paths and the validation labels / product ids.
    """
    os.makedirs(folder, exist_ok=True)
    train, _, train_pids = write_synthetic_rec(os.path.join(folder, "A_train"), train_products, num_classes,
                                               seed, size)
    val, val_labels, val_pids = write_synthetic_rec(os.path.join(folder, "A_val"), val_products, num_classes,
                                                    seed + 1, size, first_product_id=int(train_pids[-1]) + 1)
    return {"train": train, "val": val, "val_labels": val_labels, "val_product_ids": val_pids,
            "num_classes": num_classes, "size": size}


def write_report(rec, num_classes):
    """The ``.report.json`` beside `rec` with the fields training checks (``data.record_file``):
    its record count, its size and the histogram of its labels, as data.bson2rec writes them."""
    offsets = read_idx(record_paths(rec)[1])
    labels = read_headers(rec, offsets)["label"].astype(np.int64)
    report = {"records": len(offsets), "rec_bytes": os.path.getsize(rec),
              "class_histogram": np.bincount(labels, minlength=num_classes).tolist()}
    with open(record_paths(rec)[2], "w") as f:
        json.dump(report, f)
    return record_paths(rec)[2]


# Where each field of a record's frame and IRHeader lies, from the record's offset, and its format.
RECORD_FIELDS = {"magic": (0, "<I"), "length": (4, "<I"), "label": (12, "<f")}


def damage_record(rec, i, field, value):
    """Change `field` (`RECORD_FIELDS`) of record `i` of `rec` to `value` in place, as damage
    after the conversion would (the `.idx` and the report are left as they are); returns the
    record's offset."""
    offset = int(read_idx(record_paths(rec)[1])[i])
    at, fmt = RECORD_FIELDS[field]
    with open(rec, "r+b") as f:
        f.seek(offset + at)
        f.write(struct.pack(fmt, value))
    return offset


def still_running(processes, timeout):
    """Those of `processes` (``psutil.Process``) still running after at most `timeout`
    seconds. A zombie has ended: an orphan's exit status waits for init to collect it, and
    this machine's init (``process_api``) does so only every 1.6-2 s (measured: an orphan
    stayed a zombie 1.6 s after its exit), which made a 3 s limit fail about 1 run in 40.
    """
    deadline = time.monotonic() + timeout
    while True:
        running = [p for p in processes if _runs(p)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.05)


def _runs(process):
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
