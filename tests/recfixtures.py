"""Small indexed RecordIO datasets of a learnable synthetic task, for the training tests.

Records follow the bson2rec contract: ``IRHeader(flag=0, label=class_id, id=product_id,
id2=image_number)`` around real JPEG bytes, an ``.idx`` with keys 0..n-1 in file order, the
images of a product next to each other (the validation side's BSON file order).

The task: class ``c`` has its own background colour and draws its own shape (square,
disc, triangle, bar, ...) in its own colour; position, size and pixel noise vary per
image, so a small CNN must look at colour and shape, and cannot reach 100 % on the first
batch. Images are small (default 32x32) to keep CPU tests fast.

`write_checkpoints` writes a run folder of real checkpoints (of a one-layer network) for the
tests of resuming.
"""
import os

import cv2
import mxnet as mx
import numpy as np

from data.recordio import ImageRecordWriter, write_idx
from train import checkpoint

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
    rec, idx = prefix + ".rec", prefix + ".idx"
    writer = mx.recordio.MXIndexedRecordIO(idx, rec, "w")
    for key, (label, pid, number, img) in enumerate(zip(labels, product_ids, image_numbers, images)):
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        header = mx.recordio.IRHeader(flag=0, label=float(label), id=int(pid), id2=int(number))
        writer.write_idx(key, mx.recordio.pack(header, jpeg.tobytes()))
    writer.close()
    return rec


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


def write_checkpoints(run_dir, epochs, model, classes, args):
    """Checkpoints of epochs 1..`epochs` in `run_dir` as training saves them, whose JSON names
    `model`, `classes` and the arguments `args` (a dict) and nothing else: a run folder of
    format 1 (``train.run_folder``), as runs written before the format had a number; the
    weights and the trainer state are those of a one-layer network after one Adam step."""
    net = mx.gluon.nn.Dense(3)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.1})
    with mx.autograd.record():
        loss = net(mx.nd.ones((2, 4))).sum()
    loss.backward()
    trainer.step(2)
    for epoch in range(1, epochs + 1):
        checkpoint.save_checkpoint(run_dir, epoch, net, trainer, {"model": model, "classes": classes, "args": args})
    return run_dir
