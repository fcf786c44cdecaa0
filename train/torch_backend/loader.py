"""PyTorch input over the same indexed RecordIO files as the MXNet backend (``data.record_file``).

Records are read with the framework-free reader (``data.recordio``): each DataLoader
worker process opens the ``.rec`` itself (after the fork, so no file position is shared).
Where the JPEGs are decoded is an option (``--decode-on``, `batches`):

- ``workers`` (the default): OpenCV in the worker processes, which augment too
  (``train.inputs.augment_into``). A worker makes a whole batch (`ImageBatches`): it draws
  the batch's augmentations at once (``train.inputs.draws_of_records``), decodes each
  picture (``data.images.decode_bgr``) and writes it, colour-converted and augmented,
  straight into its place in one uint8 batch held in shared memory, NHWC: the batch
  crosses to the main process in one transfer, without collation nor a CHW copy, and is
  seen there as NCHW (channels_last strides: the layout the GPUs train in). The backend
  copies it to the device without blocking and normalises it there (``(pixel - mean) *
  scale``, as ``ImageRecordIter`` does in C++: ``models.torch_nets.images.normalise``,
  the predictor's too). Measured on the CPU
  (bench/results/train_torch_cpu.*.md): the path costs about the CPU time of a bare
  ``cv2.imdecode`` loop per image; before it cost 4.5x (collation, the transfer per
  picture, the CHW copy of a mirrored picture and a numpy generator per record).
- ``device``: the workers only read the JPEG bytes (`JpegBatches`: one buffer per batch);
  the main process decodes each batch with one batched call on the training device
  (nvJPEG on a GPU: ``models.torch_nets.images``) and augments it there, batch-wise
  (`augment_on_device`), for machines with fewer cores per GPU. Same pictures
  (libjpeg-turbo on the CPU equals OpenCV bit for bit; a damaged picture the device's
  decoder refuses is decoded by OpenCV, so both places take and refuse the same pictures),
  same draws, OpenCV's resize bit for bit, colour jitter within 1-2 levels of OpenCV's.

What a worker reads is checked where it is read, in both places: each record's frame
(``data.recordio.read_indexed_payload``: a record damaged after the file's check at open)
and label (a whole class id of the classifier: a label changed in the file after the
conversion report counted them). A worker says what it found of each record by a status
(`READ`, `UNDECODABLE`, `DAMAGED`) and the label as the record holds it, and the main
process raises the located error (`check_batch`): an exception raised in a DataLoader
worker would reach it only as a traceback's text.

Threads: W input workers use W cores. PyTorch runs one thread in each (its DataLoader
sets it), and OpenCV's operators on pictures of this size run on the calling thread (CPU
time = wall time); ``cv2.setNumThreads`` must not be called in a worker: after the parent
has used OpenCV's thread pool, it blocks forever in the forked child. The main process's
share of the cores is set by the backend (``models.torch_nets.devices.share_cpu_threads``).

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
from torch.utils.data import DataLoader, Dataset, get_worker_info

from data import recordio
from data.images import decode_bgr
from data.parallel import die_with_current_parent
from data.record_file import (CHANGED_LABELS, UndecodablePictureError, classes_reason, label_error,
                              label_problems)
from models.backends import WORKER_DECODE
from models.torch_nets import images as device_images
from train.inputs import NO_AUGMENTATION, augment_into, draws_of_records, geometry


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
    their device: a uint8 ``(n, 3, height, width)`` batch. The pictures of one size that
    `geometry` resizes and crops alike are resized and cropped together (all of them,
    without random crops or scales on pictures of one size: one resize call, one slice)."""
    device, n = images[0].device, len(images)
    groups = {}
    for k, (image, d) in enumerate(zip(images, draws)):
        groups.setdefault((tuple(image.shape[1:]), geometry(*image.shape[1:], size, aug, d)), []).append(k)
    pixels = None
    for (_, ((h, w), (y, x))), members in groups.items():
        batch = images[members[0]][None] if len(members) == 1 else torch.stack([images[k] for k in members])
        crops = device_images.resize(batch, (h, w))[:, :, y:y + size[0], x:x + size[1]]
        if len(members) == n:
            pixels = crops
        else:
            if pixels is None:
                pixels = torch.empty((n, 3, *size), dtype=torch.uint8, device=device)
            pixels[torch.tensor(members, device=device)] = crops
    shifts = torch.tensor([[d.shift_h, d.shift_l, d.shift_s] for d in draws])
    if bool(shifts.any()):
        pixels = _hsl_jitter_on_device(pixels, shifts)
    mirrored = torch.tensor([d.mirror for d in draws], device=device)
    return torch.where(mirrored[:, None, None, None], pixels.flip(-1), pixels)


def _shared_uint8(shape, shared=None):
    """An uninitialised uint8 tensor of `shape`, in shared memory when `shared` (by default:
    in a DataLoader worker, so that it reaches the main process without a copy, as
    PyTorch's own collation allocates its batches there), else in ordinary memory."""
    if not (get_worker_info() is not None if shared is None else shared):
        return torch.empty(shape, dtype=torch.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(int(np.prod(shape)))).view(shape)


# What an input worker says of each record it read (`check_batch` names the first that is not `READ`).
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
        frame is damaged (``data.recordio.read_indexed_payload``)."""
        try:
            payload = recordio.read_indexed_payload(self._opened(), self.record.offsets, index)
        except recordio.RecordFileError:
            return math.nan, None
        (_, label, _, _), jpeg = recordio.unpack(payload)
        return label, jpeg


class ImageBatches(_RecordReader):
    """Whole batches of a ``data.record_file.RecordFile`` written into the places (slots) of a
    batch ring shared with the main process, which makes them before it forks the workers:
    ``dataset[(slot, record numbers)]`` decodes each picture with OpenCV, augments it
    (``train.inputs.augment_into``, the draws of the epoch seeded `epoch_seed`) straight into
    ``slots[slot]`` (uint8 ``(n, height, width, 3)`` RGB of `image_shape`), and returns
    ``(slot, labels, status)``: only the slot number and two small arrays cross to the main
    process (the labels as the records hold them, a status per record: a damaged record or
    a picture that does not decode leaves zeros in its place; the main process names it:
    `check_batch`)."""

    def __init__(self, record, image_shape, augmentation, epoch_seed, slots):
        super().__init__(record)
        self.augmentation, self.epoch_seed, self.slots = augmentation, epoch_seed, slots

    def __getitem__(self, task):
        slot, indices = task
        places = self.slots[slot, :len(indices)].numpy()
        labels, status = np.empty(len(indices), np.float64), np.full(len(indices), READ, np.int8)
        for k, (index, draws) in enumerate(zip(indices, draws_of_records(self.augmentation, self.epoch_seed,
                                                                          indices))):
            labels[k], jpeg = self.label_and_jpeg(index)
            bgr = decode_bgr(jpeg) if jpeg is not None else None
            if bgr is None:
                places[k], status[k] = 0, UNDECODABLE if jpeg is not None else DAMAGED
            else:
                augment_into(places[k], bgr, self.augmentation, draws)
        return slot, labels, status


class JpegBatches(_RecordReader):
    """Whole batches of a ``data.record_file.RecordFile``, undecoded, for decoding on the device
    (``models.backends.DEVICE_DECODE``): ``(bytes, ends, labels, status)``, the JPEGs one
    after the other in one uint8 tensor (in shared memory in a worker), where each ends (a
    damaged record's: empty), the labels as the records hold them and a status per record
    (`split_jpegs` cuts the JPEGs apart again, without copying)."""

    def __getitem__(self, indices):
        labels, jpegs = zip(*(self.label_and_jpeg(index) for index in indices))
        status = np.array([READ if jpeg is not None else DAMAGED for jpeg in jpegs], np.int8)
        jpegs = [jpeg if jpeg is not None else b"" for jpeg in jpegs]
        ends = np.cumsum([len(jpeg) for jpeg in jpegs])
        data = _shared_uint8((int(ends[-1]),))
        data.numpy()[:] = np.frombuffer(b"".join(jpegs), np.uint8)
        return data, ends, np.array(labels, np.float64), status


def split_jpegs(data, ends):
    """The JPEGs of `JpegBatches`' one tensor `data`, as views of it."""
    return list(torch.tensor_split(data, ends[:-1].tolist()))


def check_batch(record, indices, labels, status, num_classes=None):
    """The labels of a batch of records `indices` of `record` as int64 class ids, once every
    record is checked: raise the located error (file, offset, product, record) of the first
    whose frame is damaged (``data.recordio.read_indexed_payload``'s, read again here), whose
    picture did not decode (`status`), or whose label is not a class id of a
    `num_classes`-way classifier (``data.record_file.label_problems``: a label changed in
    the file after the conversion report that vouched for every label). A few comparisons
    per batch: nothing next to the decoding."""
    bad = (status != READ) | label_problems(labels, num_classes)
    if not bad.any():
        return torch.from_numpy(labels.astype(np.int64))
    first = int(np.flatnonzero(bad)[0])
    i = int(indices[first])
    with open(record.rec, "rb") as f:
        (_, label, product_id, image_number), jpeg = recordio.unpack(
            recordio.read_indexed_payload(f, record.offsets, i))
    if status[first] == UNDECODABLE:
        raise UndecodablePictureError(
            record.rec, int(record.offsets[i]), product_id,
            "record %d, image %d: its %d-byte picture will not decode; convert the file again with data.bson2rec, "
            "which checks every picture (--skip-bad leaves them out)" % (i, image_number, len(jpeg)))
    raise label_error(record, i, label, product_id, image_number, "%s: %s" % (
        classes_reason(num_classes) if num_classes is not None else "not a class id", CHANGED_LABELS))


def _as_is(batch):
    return batch


def _batched(order, batch_size, drop_last):
    """The record numbers `order` as lists of `batch_size` (the last one shorter unless `drop_last`)."""
    end = len(order) // batch_size * batch_size if drop_last else len(order)
    return [order[start:start + batch_size].tolist() for start in range(0, end, batch_size)]


AHEAD = 2           # batches each input worker holds at once (the DataLoader's prefetch factor)


def _loader(dataset, tasks, workers, pin_memory):
    """The batches of a DataLoader of `dataset`'s whole batches, one per item of `tasks`: one
    worker makes each batch, in order, each worker `AHEAD` batches ahead. The workers are
    forked with SIGINT blocked, as ``data.parallel``'s: they ignore it (`_worker_start`), and a
    Ctrl-C that comes while they are forked reaches this process once they are, not inside a
    fork handler, which would swallow it (and the worker it killed would end the run with
    "DataLoader worker exited unexpectedly")."""
    loader = DataLoader(dataset, batch_size=None, sampler=tasks, num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=AHEAD if workers else None, persistent_workers=False, collate_fn=_as_is,
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
    processes; channels_last in memory, in pinned memory for a GPU `device`, still on the
    CPU) or ``device`` (``models.backends.DEVICE_DECODE``: the workers read the JPEG bytes,
    and one batched ``models.torch_nets.images.decode_on_device`` call decodes them on
    `device`, where they are augmented: the batches are there). Labels are int64 class ids
    of a `num_classes`-way classifier. A damaged record, an undecodable picture or a label
    that is not a class id raises the error naming its record (`check_batch`)."""
    device = torch.device(device)
    pin_memory = device.type == "cuda"
    batch_lists = _batched(order, batch_size, drop_last)
    if decode_on == WORKER_DECODE:
        yield from _decoded_by_workers(record, batch_lists, image_shape, augmentation, epoch_seed, workers,
                                       pin_memory, num_classes)
        return
    size = tuple(image_shape[1:])
    for indices, (data, ends, labels, status) in zip(batch_lists, _loader(JpegBatches(record), batch_lists, workers,
                                                                          pin_memory)):
        class_ids = check_batch(record, indices, labels, status, num_classes)
        images = device_images.decode_on_device(split_jpegs(data, ends), device)
        check_batch(record, indices, labels, np.array([READ if image is not None else UNDECODABLE
                                                       for image in images], np.int8), num_classes)
        yield (augment_on_device(images, size, augmentation, draws_of_records(augmentation, epoch_seed, indices)),
               class_ids)


def _decoded_by_workers(record, batch_lists, image_shape, augmentation, epoch_seed, workers, pin_memory,
                        num_classes):
    """`batches` decoded by the workers into a ring of batch slots in shared memory (made
    here, before the DataLoader forks them): one slot more than the batches the workers
    hold at once (`AHEAD` each), so a slot is written again only once its batch has been
    copied out (the DataLoader hands out batch b + AHEAD x W once batch b has come, and
    this copies each batch as it comes). The copy goes to pinned memory for a GPU; it replaces
    a shared-memory segment, its page faults and its file descriptor per batch."""
    batch_size = max(len(indices) for indices in batch_lists) if batch_lists else 0
    slots = _shared_uint8((AHEAD * workers + 1, batch_size, *image_shape[1:], 3), shared=workers > 0)
    dataset = ImageBatches(record, image_shape, augmentation, epoch_seed, slots)
    tasks = [(number % len(slots), indices) for number, indices in enumerate(batch_lists)]
    for (slot, indices), (_, labels, status) in zip(tasks, _loader(dataset, tasks, workers, False)):
        class_ids = check_batch(record, indices, labels, status, num_classes)
        pixels = slots[slot, :len(indices)]
        pixels = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True).copy_(pixels) if pin_memory \
            else pixels.clone()
        yield pixels.permute(0, 3, 1, 2), class_ids
