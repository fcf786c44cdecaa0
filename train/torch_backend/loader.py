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
  for bit), same draws, OpenCV's resize bit for bit, colour jitter within 1-2 levels of OpenCV's.

Order, augmentation draws and the exactness of a resume are ``train.inputs``'s (functions
of seed, epoch and record only, the same in both decoding places). They are not
bit-identical to MXNet's C++ iterator (other random streams).

Importing this module imports PyTorch: never in an MXNet process.
"""
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data import recordio
from data.images import decode_rgb
from data.record_file import UndecodablePictureError
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
        payload, _ = recordio.read_record(self._opened(), int(self.record.offsets[index]))
        (_, label, _, _), jpeg = recordio.unpack(payload)
        return int(label), jpeg


class RecordImages(_RecordReader):
    """The pictures of a ``data.record_file.RecordFile`` as ``(pixels, label, record number, decoded)``:
    uint8 CHW pixels of `image_shape`, decoded with OpenCV and augmented (`augment`). A
    picture that does not decode gives zeros and ``decoded`` False (the main process names
    it: `check_decoded`), so no exception has to cross from a worker process."""

    def __init__(self, record, image_shape, augmentation=NO_AUGMENTATION, epoch_seed=0):
        super().__init__(record)
        self.size = tuple(image_shape[1:])
        self.augmentation = augmentation
        self.epoch_seed = epoch_seed

    def __getitem__(self, index):
        label, jpeg = self.label_and_jpeg(index)
        rgb = decode_rgb(jpeg)
        if rgb is None:
            return torch.zeros((3, *self.size), dtype=torch.uint8), label, index, False
        rgb = augment(rgb, self.size, self.augmentation, draws_of(self.augmentation, self.epoch_seed, index))
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), label, index, True


class RecordJpegs(_RecordReader):
    """The records of a ``data.record_file.RecordFile`` as ``(JPEG bytes as a uint8 tensor, label,
    record number)``, undecoded, for decoding on the device (``models.backends.DEVICE_DECODE``)."""

    def __getitem__(self, index):
        label, jpeg = self.label_and_jpeg(index)
        return device_images.jpeg_tensor(jpeg), label, index

    @staticmethod
    def collate(samples):
        jpegs, labels, indices = zip(*samples)
        return list(jpegs), torch.tensor(labels), torch.tensor(indices)


def check_decoded(record, indices, decoded):
    """Raise ``UndecodablePictureError`` naming the first record of a batch whose
    picture did not decode."""
    if bool(decoded.all()):
        return
    i = int(indices[np.flatnonzero(~decoded.numpy())[0]])
    with open(record.rec, "rb") as f:
        (_, _, product_id, image_number), jpeg = recordio.unpack(recordio.read_record(f, int(record.offsets[i]))[0])
    raise UndecodablePictureError(
        record.rec, int(record.offsets[i]), product_id,
        "record %d, image %d: its %d-byte picture will not decode; convert the file again with data.bson2rec, "
        "which checks every picture (--skip-bad leaves them out)" % (i, image_number, len(jpeg)))


def _loader(dataset, order, batch_size, workers, pin_memory, drop_last):
    return DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                      pin_memory=pin_memory, drop_last=drop_last, prefetch_factor=2 if workers else None,
                      persistent_workers=False, collate_fn=getattr(dataset, "collate", None))


def batches(record, order, batch_size, image_shape, augmentation=NO_AUGMENTATION, epoch_seed=0,
            workers=0, decode_on=WORKER_DECODE, device="cpu", drop_last=True):
    """``(pixels, labels)`` batches of `batch_size` pictures of `record` (a
    ``data.record_file.RecordFile``), reading the record numbers `order` in that order with
    `workers` processes (0: this one), each keeping two batches ahead; pixels uint8 NCHW of
    `image_shape`, augmented with `augmentation` drawn for the epoch seeded `epoch_seed`.

    Decoded where `decode_on` says: ``workers`` (`WORKER_DECODE`: OpenCV in the worker
    processes; the batches come in pinned memory for a GPU `device`, still on the CPU) or
    ``device`` (``models.backends.DEVICE_DECODE``: the workers read the JPEG bytes, and one batched
    ``models.torch_nets.images.decode_on_device`` call decodes them on `device`, where they
    are augmented: the batches are there). An undecodable picture raises
    ``UndecodablePictureError`` naming its record."""
    device = torch.device(device)
    pin_memory = device.type == "cuda"
    size = tuple(image_shape[1:])
    if decode_on == WORKER_DECODE:
        dataset = RecordImages(record, image_shape, augmentation, epoch_seed)
        for pixels, labels, indices, decoded in _loader(dataset, order, batch_size, workers, pin_memory, drop_last):
            check_decoded(record, indices, decoded)
            yield pixels, labels
        return
    for jpegs, labels, indices in _loader(RecordJpegs(record), order, batch_size, workers, pin_memory, drop_last):
        images = device_images.decode_on_device(jpegs, device)
        check_decoded(record, indices, torch.tensor([image is not None for image in images]))
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
