"""PyTorch input over the same indexed RecordIO files as the MXNet backend (``data.record_file``).

Records are read with the framework-free reader (``data.recordio``): each DataLoader
worker process opens the ``.rec`` itself (after the fork, so no file position is shared).
Where the JPEGs are decoded is an option (``--decode-on``, `batches`):

- ``workers`` (the default): OpenCV in the worker processes (``data.images.decode_rgb``),
  which augment too (``train.inputs.augment``). Batches leave the workers as uint8 NCHW
  tensors (4x less to copy than float32) in pinned memory; the backend copies them to the
  device without blocking and normalises them there (``normalise``: ``(pixel - mean) *
  scale``, as ``ImageRecordIter`` does in C++). 59,000 img/s on 16 cores of an H200
  machine (issue 13's figure), the rate a DPN-92 needs 3x over.
- ``device``: the workers only read the JPEG bytes; the main process decodes each batch
  with one batched call on the training device (nvJPEG on a GPU:
  ``models.torch_nets.images``) and augments it there (`augment_on_device`), for machines
  with fewer cores per GPU. Same pictures (libjpeg-turbo on the CPU equals OpenCV bit
  for bit; a damaged picture the device's decoder refuses is decoded by OpenCV, so both
  places take and refuse the same pictures), same draws, OpenCV's resize bit for bit,
  colour jitter within 1-2 levels of OpenCV's.

Order, augmentation draws and the exactness of a resume are ``train.inputs``'s (functions
of seed, epoch and record only, the same in both decoding places). They are not
bit-identical to MXNet's C++ iterator (other random streams).

Importing this module imports PyTorch: never in an MXNet process.
"""
import math
import os
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data import recordio
from data.images import decode_rgb
from data.parallel import die_with_current_parent
from data.record_file import (CHANGED_LABELS, UndecodablePictureError, classes_reason, label_error,
                              label_problems)
from models.backends import WORKER_DECODE
from models.torch_nets import images as device_images
from train.inputs import NO_AUGMENTATION, augment, draws_of, geometry


def _hsl_jitter_on_device(pixels, shifts):
    """`_hsl_jitter` of uint8 ``(n, 3, h, w)`` `pixels` by the per-image ``(n, 3)`` shifts
    (hue, lightness, saturation), on their device: OpenCV's 8-bit RGB <-> HLS formulas in
    float32, rounded to 8-bit HLS in between as OpenCV does (within 2 levels of it)."""
    rgb = pixels.float() / 255
    r, g, b = rgb.unbind(1)
    vmax, vmin = rgb.amax(1), rgb.amin(1)
    diff, total = vmax - vmin, vmax + vmin
    lightness = total / 2
    chromatic = diff > 1e-6
    saturation = torch.where(lightness < 0.5, diff / total.clamp_min(1e-6), diff / (2 - total).clamp_min(1e-6))
    step = 60 / diff.clamp_min(1e-6)
    hue = torch.where(vmax == r, (g - b) * step, torch.where(vmax == g, (b - r) * step + 120, (r - g) * step + 240))
    hue = torch.where(chromatic, torch.where(hue < 0, hue + 360, hue), 0)
    saturation = torch.where(chromatic, saturation, 0)
    shift = shifts.to(pixels.device, torch.float32)[:, :, None, None]
    h = torch.remainder((hue / 2).round() + shift[:, 0], 180) * 2
    l = ((lightness * 255).round() + shift[:, 1]).clamp(0, 255) / 255
    s = ((saturation * 255).round() + shift[:, 2]).clamp(0, 255) / 255
    amplitude = s * torch.minimum(l, 1 - l)
    channels = []
    for n in (0, 8, 4):                       # red, green, blue
        k = torch.remainder(n + h / 30, 12)
        channels.append(l - amplitude * torch.minimum(k - 3, 9 - k).clamp(-1, 1))
    return (torch.stack(channels, 1) * 255).round().clamp(0, 255).to(torch.uint8)


def augment_on_device(images, size, aug, draws):
    """`augment` of the decoded ``(3, h, w)`` uint8 tensors `images` with their `draws`, on
    their device: a uint8 ``(n, 3, height, width)`` batch."""
    crops = []
    for image, d in zip(images, draws):
        (h, w), (y, x) = geometry(*image.shape[1:], size, aug, d)
        crops.append(device_images.resize(image, (h, w))[:, y:y + size[0], x:x + size[1]])
    pixels = torch.stack(crops)
    shifts = torch.tensor([[d.shift_h, d.shift_l, d.shift_s] for d in draws])
    if bool(shifts.any()):
        pixels = _hsl_jitter_on_device(pixels, shifts)
    mirrored = torch.tensor([d.mirror for d in draws], device=pixels.device)
    return torch.where(mirrored[:, None, None, None], pixels.flip(-1), pixels)


# What an input worker says of each record it read (`check_batch` names the first that is not
# `READ`): exceptions raised in a DataLoader worker reach the main process as a traceback's text.
READ, UNDECODABLE, DAMAGED = 0, 1, 2


class _RecordReader(Dataset):
    """Records of a ``data.record_file.RecordFile`` by record number; each worker process opens the
    ``.rec`` itself (after the fork, so no file position is shared)."""

    def __init__(self, record):
        self.record = record
        self._file = None
        self._pid = None

    def __len__(self):
        return self.record.num_records

    def _opened(self):
        if self._pid != os.getpid():      # a worker process: its own file object
            self._file, self._pid = open(self.record.rec, "rb"), os.getpid()
        return self._file

    def label_and_jpeg(self, index):
        """(label as the record holds it, JPEG bytes) of record `index`, or (NaN, None) when its
        frame is damaged (``data.recordio.read_indexed_record``)."""
        try:
            payload = recordio.read_indexed_record(self._opened(), self.record.offsets, index)
        except recordio.RecordFileError:
            return math.nan, None
        (_, label, _, _), jpeg = recordio.unpack(payload)
        return label, jpeg


class RecordImages(_RecordReader):
    """The pictures of a ``data.record_file.RecordFile`` as ``(pixels, label, record number, status)``:
    uint8 CHW pixels of `image_shape`, decoded with OpenCV and augmented (`augment`), the label
    as the record holds it (a float). A damaged record or a picture that does not decode gives
    zeros and its `status` (`DAMAGED`, `UNDECODABLE`; the main process names it: `check_batch`),
    so that no exception has to cross from a worker process."""

    def __init__(self, record, image_shape, augmentation=NO_AUGMENTATION, epoch_seed=0):
        super().__init__(record)
        self.size = tuple(image_shape[1:])
        self.augmentation = augmentation
        self.epoch_seed = epoch_seed

    def __getitem__(self, index):
        label, jpeg = self.label_and_jpeg(index)
        rgb = decode_rgb(jpeg) if jpeg is not None else None
        if rgb is None:
            return torch.zeros((3, *self.size), dtype=torch.uint8), label, index, \
                UNDECODABLE if jpeg is not None else DAMAGED
        rgb = augment(rgb, self.size, self.augmentation, draws_of(self.augmentation, self.epoch_seed, index))
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), label, index, READ


class RecordJpegs(_RecordReader):
    """The records of a ``data.record_file.RecordFile`` as ``(JPEG bytes as a uint8 tensor, label,
    record number, status)``, undecoded, for decoding on the device (``models.backends.DEVICE_DECODE``);
    a damaged record gives no bytes and `DAMAGED`."""

    def __getitem__(self, index):
        label, jpeg = self.label_and_jpeg(index)
        return device_images.jpeg_tensor(jpeg or b""), label, index, READ if jpeg is not None else DAMAGED

    @staticmethod
    def collate(samples):
        jpegs, labels, indices, status = zip(*samples)
        return list(jpegs), torch.tensor(labels, dtype=torch.float64), torch.tensor(indices), torch.tensor(status)


def check_batch(record, indices, labels, status, num_classes=None):
    """The labels of a batch of records of `record` as class ids (int64), once every record is
    checked: raise the located error (file, offset, product, record) of the first whose
    frame is damaged (``data.recordio.read_indexed_record``'s, read again here), whose
    picture did not decode (`status`), or whose label is not a class id of a
    `num_classes`-way classifier (``data.record_file.label_problems``: a label changed in
    the file after the conversion report that vouched for every label). A few comparisons
    per batch: nothing next to the decoding."""
    bad = (status.numpy() != READ) | label_problems(labels.numpy(), num_classes)
    if not bad.any():
        return labels.long()
    first = int(np.flatnonzero(bad)[0])
    i = int(indices[first])
    with open(record.rec, "rb") as f:
        (_, label, product_id, image_number), jpeg = recordio.unpack(recordio.read_indexed_record(f, record.offsets, i))
    if status[first] == UNDECODABLE:
        raise UndecodablePictureError(
            record.rec, int(record.offsets[i]), product_id,
            "record %d, image %d: its %d-byte picture will not decode; convert the file again with data.bson2rec, "
            "which checks every picture (--skip-bad leaves them out)" % (i, image_number, len(jpeg)))
    raise label_error(record, i, label, product_id, image_number, "%s: %s" % (
        classes_reason(num_classes) if num_classes is not None else "not a class id", CHANGED_LABELS))


def _loaded(dataset, order, batch_size, workers, pin_memory, drop_last):
    """The batches of a DataLoader over `dataset`, whose `workers` processes are forked with
    SIGINT blocked, as ``data.parallel``'s: they ignore it (`_worker_start`), and a Ctrl-C that
    comes while they are forked reaches this process once they are, not inside a fork
    handler, which would swallow it (and the worker it killed would end the run with
    "DataLoader worker exited unexpectedly")."""
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                        pin_memory=pin_memory, drop_last=drop_last, prefetch_factor=2 if workers else None,
                        persistent_workers=False, collate_fn=getattr(dataset, "collate", None),
                        worker_init_fn=_worker_start)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        loaded = iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return loaded


def _worker_start(worker_id):
    """A DataLoader worker's start: Ctrl-C is the training process's (SIGINT ignored), and the
    worker dies with its parent (SIGKILL, ``data.parallel.die_with_current_parent``), which
    may end without shutting its workers down (a SIGKILL, or Ctrl-C: ``train.train.main``);
    PyTorch's own check of the parent comes only every 5 s."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if not die_with_current_parent():
        os._exit(1)


def batches(record, order, batch_size, image_shape, augmentation=NO_AUGMENTATION, epoch_seed=0,
            workers=0, decode_on=WORKER_DECODE, device="cpu", drop_last=True, num_classes=None):
    """``(pixels, labels)`` batches of `batch_size` pictures of `record` (a
    ``data.record_file.RecordFile``), reading the record numbers `order` in that order with
    `workers` processes (0: this one), each keeping two batches ahead; pixels uint8 NCHW of
    `image_shape`, augmented with `augmentation` drawn for the epoch seeded `epoch_seed`.

    Decoded where `decode_on` says: ``workers`` (`WORKER_DECODE`: OpenCV in the worker
    processes; the batches come in pinned memory for a GPU `device`, still on the CPU) or
    ``device`` (``models.backends.DEVICE_DECODE``: the workers read the JPEG bytes, and one batched
    ``models.torch_nets.images.decode_on_device`` call decodes them on `device`, where they
    are augmented: the batches are there). Labels are int64 class ids of a `num_classes`-way
    classifier. A damaged record, an undecodable picture or a label that is not a class id
    raises the error naming its record (`check_batch`)."""
    device = torch.device(device)
    pin_memory = device.type == "cuda"
    size = tuple(image_shape[1:])
    if decode_on == WORKER_DECODE:
        dataset = RecordImages(record, image_shape, augmentation, epoch_seed)
        for pixels, labels, indices, status in _loaded(dataset, order, batch_size, workers, pin_memory, drop_last):
            yield pixels, check_batch(record, indices, labels, status, num_classes)
        return
    for jpegs, labels, indices, status in _loaded(RecordJpegs(record), order, batch_size, workers, pin_memory,
                                                  drop_last):
        labels = check_batch(record, indices, labels, status, num_classes)
        images = device_images.decode_on_device(jpegs, device)
        decoded = torch.tensor([image is not None for image in images])
        check_batch(record, indices, labels, torch.where(decoded, READ, UNDECODABLE), num_classes)
        draws = [draws_of(augmentation, epoch_seed, int(i)) for i in indices]
        yield augment_on_device(images, size, augmentation, draws), labels


def normalise(pixels, mean, scale, device, channels_last=False):
    """Float32 network input ``(pixel - mean) * scale`` of uint8 NCHW `pixels`, on `device`
    (copied without blocking from pinned memory when they are not there yet); `scale` is
    one number or one per channel."""
    x = pixels.to(device, non_blocking=True).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if any(mean):
        x = x - torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    if isinstance(scale, tuple):
        return x * torch.tensor(scale, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return x * scale if scale != 1 else x
