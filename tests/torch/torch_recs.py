"""Synthetic indexed RecordIO files for the PyTorch tests, written with ``data.recordio``
through ``tests/helpers.py`` (framework-free), with a task of their own: `class_picture`."""
import os

import cv2
import numpy as np

from helpers import write_pictures_rec


def class_picture(label, rng, num_classes, size):
    """JPEG bytes of a noisy picture whose colour and stripe says its class."""
    hue = np.uint8(label * 180 // num_classes)
    colour = cv2.cvtColor(np.array([[[hue, 200, 220]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(int)
    img = np.clip(colour + rng.randint(-40, 41, (size, size, 3)), 0, 255).astype(np.uint8)
    img[:, label * size // num_classes:(label + 1) * size // num_classes] //= 3
    return cv2.imencode(".jpg", img)[1].tobytes()


def write_rec(prefix, num_products, num_classes, seed, size=32, first_product_id=0, pictures=None):
    """``prefix.rec`` + ``.idx`` of `num_products` products of 1-3 pictures each (`pictures`:
    a function of (label, rng) replacing `class_picture`); returns (rec path, labels, product ids)."""
    rng = np.random.RandomState(seed)
    labels, products, numbers = [], [], []
    for product in range(first_product_id, first_product_id + num_products):
        label = int(rng.randint(num_classes))
        for number in range(1 + rng.randint(3)):
            labels.append(label), products.append(product), numbers.append(number)
    draw = pictures or (lambda label, r: class_picture(label, r, num_classes, size))
    rec = write_pictures_rec(prefix, labels, products, numbers, [draw(label, rng) for label in labels])
    return rec, np.array(labels), np.array(products)


def write_dataset(folder, num_classes=4, train_products=160, val_products=40, size=32, seed=0):
    """``A_train`` and ``A_val`` in `folder`, disjoint products; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    train = write_rec(os.path.join(folder, "A_train"), train_products, num_classes, seed, size)[0]
    val = write_rec(os.path.join(folder, "A_val"), val_products, num_classes, seed + 1, size,
                    first_product_id=train_products)[0]
    return train, val
