"""PyTorch input over the same indexed RecordIO files as the Gluon path (``train.data_iter``).

Records are read with the framework-free reader (``data.recordio``): each DataLoader
worker process opens the ``.rec`` itself (after the fork, so no file position is shared)
and decodes JPEGs with OpenCV (``predict.preprocess.decode_rgb``). Batches leave the
workers as uint8 NCHW tensors (4x less to copy than float32) in pinned memory; the
backend copies them to the device without blocking and normalises them there
(``normalise``: ``(pixel - mean) * scale``, as ``ImageRecordIter`` does in C++).

Augmentations follow the options of MXNet's ``ImageRecordIter`` as the Gluon path sets
them (``data_iter.Augmentation``), in the same order: resize of the shorter edge, random
scale, crop of the input size (random with ``random_crop``, else centred), HSL jitter,
random mirror. They are not bit-identical to MXNet's C++ (other random streams).

Order and exactness of a resume: an epoch's order is one global permutation seeded by
``data_iter.train_epoch_seed(seed, epoch)``, dealt to the workers of a distributed run
a batch each in turn (`epoch_order`); the augmentation of a record is drawn from a generator seeded by
(epoch seed, record number). Both are functions of (seed, epoch, record) only, so a
resumed run reads exactly what an uninterrupted one reads, and one process reading a
global batch of B images reads the union of what n processes reading B/n each read.

Importing this module imports PyTorch: never in an MXNet process.
"""
import os

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data import recordio
from predict.preprocess import decode_rgb
from train import data_iter


def epoch_order(num_records, epoch_seed, batch_size, rank=0, num_workers=1):
    """Record numbers worker `rank` of `num_workers` reads in the epoch seeded `epoch_seed`,
    in batches of `batch_size`: of one global permutation, the `rank`-th of each run of
    `num_workers` consecutive batches (the last incomplete run left out). Batch b of each
    worker thus holds the `rank`-th part of batch b of one worker reading batches of
    `num_workers` x `batch_size` images, and a worker's k consecutive batches the images
    of one k-times larger batch (``--grad-accum``)."""
    order = np.random.default_rng(epoch_seed).permutation(num_records)
    step = batch_size * num_workers
    return order[:num_records // step * step].reshape(-1, num_workers, batch_size)[:, rank].ravel()


def _resized(rgb, height, width):
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def _shorter_edge(rgb, edge):
    h, w = rgb.shape[:2]
    factor = edge / min(h, w)
    return _resized(rgb, max(1, round(h * factor)), max(1, round(w * factor)))


def _hsl_jitter(rgb, aug, rng):
    """Shift hue, saturation and lightness by uniform integers within the amplitudes (OpenCV's
    8-bit HLS: hue in 0..179, wrapping; the others clipped to 0..255)."""
    shift = [rng.integers(-a, a + 1) if a else 0 for a in (aug.random_h, aug.random_l, aug.random_s)]
    hls = cv2.cvtColor(rgb, cv2.COLOR_RGB2HLS).astype(np.int16)
    hls[..., 0] = (hls[..., 0] + shift[0]) % 180
    hls[..., 1:] = np.clip(hls[..., 1:] + np.array(shift[1:], np.int16), 0, 255)
    return cv2.cvtColor(hls.astype(np.uint8), cv2.COLOR_HLS2RGB)


def augment(rgb, size, aug, rng):
    """`rgb` (h, w, 3) uint8 made into an input of `size` (height, width) with the
    augmentations `aug` (``data_iter.Augmentation``) drawn from `rng`."""
    height, width = size
    if aug.resize > 0:
        rgb = _shorter_edge(rgb, aug.resize)
    if (aug.min_scale, aug.max_scale) != (1.0, 1.0):
        factor = rng.uniform(aug.min_scale, aug.max_scale)
        rgb = _resized(rgb, max(height, round(rgb.shape[0] * factor)), max(width, round(rgb.shape[1] * factor)))
    if rgb.shape[0] < height or rgb.shape[1] < width:
        rgb = _resized(rgb, max(height, rgb.shape[0]), max(width, rgb.shape[1]))
    spare_y, spare_x = rgb.shape[0] - height, rgb.shape[1] - width
    if aug.random_crop:
        y, x = int(rng.integers(spare_y + 1)), int(rng.integers(spare_x + 1))
    else:
        y, x = spare_y // 2, spare_x // 2
    rgb = rgb[y:y + height, x:x + width]
    if aug.random_h or aug.random_s or aug.random_l:
        rgb = _hsl_jitter(rgb, aug, rng)
    if aug.random_mirror and rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    return rgb


class RecordImages(Dataset):
    """The pictures of a ``data_iter.RecordFile`` as ``(pixels, label, record number, decoded)``:
    uint8 CHW pixels of `image_shape`. A picture that does not decode gives zeros and
    ``decoded`` False (the main process names it: `check_decoded`), so no exception has to
    cross from a worker process."""

    def __init__(self, record, image_shape, augmentation=data_iter.NO_AUGMENTATION, epoch_seed=0):
        self.record = record
        self.size = tuple(image_shape[1:])
        self.augmentation = augmentation
        self.epoch_seed = epoch_seed
        self._file = None
        self._pid = None

    def __len__(self):
        return self.record.num_records

    def _opened(self):
        if self._pid != os.getpid():      # a worker process: its own file object
            self._file, self._pid = open(self.record.rec, "rb"), os.getpid()
        return self._file

    def __getitem__(self, index):
        payload, _ = recordio.read_record(self._opened(), int(self.record.offsets[index]))
        (_, label, _, _), jpeg = recordio.unpack(payload)
        rgb = decode_rgb(jpeg)
        if rgb is None:
            return torch.zeros((3, *self.size), dtype=torch.uint8), int(label), index, False
        rng = np.random.default_rng([self.epoch_seed, index])
        rgb = augment(rgb, self.size, self.augmentation, rng)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), int(label), index, True


def check_decoded(record, indices, decoded):
    """Raise ``data_iter.UndecodablePictureError`` naming the first record of a batch whose
    picture did not decode."""
    if bool(decoded.all()):
        return
    i = int(indices[np.flatnonzero(~decoded.numpy())[0]])
    with open(record.rec, "rb") as f:
        (_, _, product_id, image_number), jpeg = recordio.unpack(recordio.read_record(f, int(record.offsets[i]))[0])
    raise data_iter.UndecodablePictureError(
        record.rec, int(record.offsets[i]), product_id,
        "record %d, image %d: its %d-byte picture will not decode; convert the file again with data.bson2rec, "
        "which checks every picture (--skip-bad leaves them out)" % (i, image_number, len(jpeg)))


def batches(dataset, order, batch_size, workers, pin_memory=False, drop_last=True):
    """DataLoader over `dataset` reading the record numbers `order` in that order, in batches
    of `batch_size`, decoded in `workers` processes (0: in this one), each keeping two
    batches ahead. Yields ``(pixels, labels)`` after `check_decoded`."""
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                        pin_memory=pin_memory, drop_last=drop_last, prefetch_factor=2 if workers else None,
                        persistent_workers=False)
    for pixels, labels, indices, decoded in loader:
        check_decoded(dataset.record, indices, decoded)
        yield pixels, labels


def normalise(pixels, mean, scale, device, channels_last=False):
    """Float32 network input ``(pixel - mean) * scale`` of uint8 NCHW `pixels`, on `device`
    (copied without blocking from pinned memory)."""
    x = pixels.to(device, non_blocking=True).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if any(mean):
        x = x - torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return x * scale if scale != 1 else x
