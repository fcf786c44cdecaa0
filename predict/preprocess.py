"""The one preprocessing of a network's input, taken from its checkpoint.

A picture becomes a network input in four steps, with the checkpoint's preprocessing
(`train.run_folder.Preprocessing` of its epoch-NNNN.json: ``image_shape`` ``(3, H, W)``,
``channel_order``, ``mean`` and ``scale`` per channel):

1. decode the JPEG to RGB uint8 pixels (OpenCV: BGR, converted);
2. resize to ``H x W`` (bilinear, ``cv2.INTER_LINEAR``) when the picture is not that size;
3. ``(pixel - mean) * scale`` in float32, per channel, channels in ``channel_order``
   (RGB, as MXNet's iterator feeds the networks);
4. NCHW layout.

Training's evaluation gets its batches from MXNet's ``ImageRecordIter`` (train.data_iter),
which does the same in C++: for pictures of the network's size and for smaller ones
(bilinear upscaling) its batches equal `network_input` of this module bit for bit
(tests/test_predict_parity.py). It differs for pictures LARGER than ``H x W``: the
iterator takes their centre ``H x W`` crop where this module resizes. The Kaggle pictures
are 180 x 180 and the recipes' networks take 180 x 180, where both agree.

Prediction decodes every picture once, to the largest input size of the models of the run
(`decoded_size`; the test-time views are built there, predict.decode), and resizes to a
model's own size only for models of another size (predict.inference.ModelRunner): a model of the decoded
size, or any model of a picture already at its size, gets exactly the steps above.
Checkpoints that do not record their input (runs written before ``image_shape`` was
saved) take the Kaggle picture size, 180 x 180, which every published recipe used.
"""
import dataclasses

import cv2
import numpy as np

from train.run_folder import preprocessing

KAGGLE_IMAGE_SHAPE = (3, 180, 180)
CHANNEL_ORDERS = ("RGB", "BGR")


def of_checkpoint(meta):
    """The `train.run_folder.Preprocessing` of an epoch's metadata, with the Kaggle size for
    runs that did not record their input shape."""
    found = preprocessing(meta)
    where = meta.get("params", "the checkpoint")
    if found.image_shape is not None and (len(found.image_shape) != 3 or found.image_shape[0] != 3):
        raise ValueError(f"image_shape {list(found.image_shape)} of {where}: expected [3, height, width]")
    if found.channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel order {found.channel_order!r} of {where}: expected one of {CHANNEL_ORDERS}")
    return dataclasses.replace(found, image_shape=tuple(found.image_shape or KAGGLE_IMAGE_SHAPE))


def network_input(preprocess, pixels):
    """Float32 NCHW input of a network with `preprocess` (a `train.run_folder.Preprocessing`)
    from ``(n, h, w, 3)`` uint8 RGB pixels: steps 2-4 of the module docstring. The
    raw-pixel models of the reference (mean 0, scale 1) skip the arithmetic: the values
    are the same."""
    pixels = resize_all(pixels, preprocess.image_shape[1:])
    if preprocess.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
    if any(preprocess.mean) or preprocess.scale != 1:
        x = (x - np.asarray(preprocess.mean, np.float32).reshape(1, 3, 1, 1)) * np.float32(preprocess.scale)
    return x


def decode_rgb(jpeg):
    """RGB uint8 pixels of JPEG bytes at their own size, or None when they are not a
    decodable image. OpenCV returns None for undecodable bytes but raises on an empty
    buffer (``!buf.empty() in function 'imdecode_'``), which therefore never reaches it."""
    if not len(jpeg):
        return None
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize(rgb, size):
    """`rgb` at ``size`` (height, width), bilinear; itself when it already is that size."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_all(pixels, size):
    """Every image of ``(n, h, w, 3)`` `pixels` at ``size``; the array itself when it is."""
    if pixels.shape[1:3] == tuple(size):
        return pixels
    return np.stack([resize(p, size) for p in pixels]) if len(pixels) else \
        np.zeros((0, *size, 3), pixels.dtype)


def decoded_size(models):
    """The size pictures are decoded to for a run of `models` (as the model workers describe
    them, with their ``image_shape``): the largest input, by area."""
    sizes = [tuple(m["image_shape"][1:]) for m in models]
    return max(sizes, key=lambda s: (s[0] * s[1], s))
