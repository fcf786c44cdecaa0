"""What a training epoch reads, framework-free: its order, its seeds, its augmentation draws.

Exactness of a resume: an epoch's order is one global permutation seeded by
`train_epoch_seed` (seed, epoch), dealt to the workers of a distributed run a batch each
in turn (`epoch_order`); the augmentation of a record (`Draws`) is drawn from a generator
seeded by (epoch seed, record number) before the picture is decoded, so every decoding
place (OpenCV in the PyTorch input workers: `augment`; a PyTorch device:
``train.torch_backend.data.augment_on_device``) draws alike. Both are functions of (seed,
epoch, record) only, so a resumed run reads exactly what an uninterrupted one reads, and
one process reading a global batch of B images reads the union of what n processes
reading B/n each read. MXNet's ``ImageRecordIter`` draws its own (``train.mxnet_backend.data``),
from the same `Augmentation` options and `train_epoch_seed`.

Augmentations follow the options of MXNet's ``ImageRecordIter``, in its order: resize of
the shorter edge, random scale (one resize to the product of both: `geometry`), crop of
the input size (random with ``random_crop``, else centred), HSL jitter, random mirror.
"""
import dataclasses

import cv2
import numpy as np

from data.images import resize
from data.record_file import DataFileError


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training augmentations of ``ImageRecordIter`` (the reference used random mirror only).

    ``resize``: shorter edge resized first (-1: off); ``random_crop`` with
    ``min_scale``/``max_scale``: random scale of the image, then a random crop of the
    input size; ``random_h/s/l``: HSL jitter amplitudes as in the reference's ablation (20).
    """

    random_mirror: bool = True
    random_crop: bool = False
    min_scale: float = 1.0
    max_scale: float = 1.0
    random_h: int = 0
    random_s: int = 0
    random_l: int = 0
    resize: int = -1


NO_AUGMENTATION = Augmentation(random_mirror=False)


def train_epoch_seed(seed, epoch):
    """Seed of epoch `epoch`'s shuffle and augmentation (see the module docstring)."""
    return seed * 1000003 + epoch


def batches_per_epoch(num_records, batch_size, num_parts=1, epoch_size=0, grad_accum=1):
    """Batches each of `num_parts` workers reads in one epoch.

    One epoch is one pass over the smallest shard (``num_records // num_parts``), or
    ``epoch_size`` images in all when that is set and smaller: the first
    ``epoch_size // num_parts`` images of each worker's fresh shuffle. The count is
    rounded down to whole optimizer steps of ``grad_accum`` batches, so every worker of a
    distributed run makes the same number of steps and a partial batch is never used.
    """
    images = num_records // num_parts
    if epoch_size:
        images = min(images, epoch_size // num_parts)
    steps = images // (batch_size * grad_accum)
    if steps == 0:
        raise DataFileError("an epoch of %d images per worker is smaller than one optimizer step of %d x %d "
                            "images: lower --batch-size or --grad-accum" % (images, grad_accum, batch_size))
    return steps * grad_accum


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


@dataclasses.dataclass(frozen=True)
class Draws:
    """The random numbers of one picture's augmentation, drawn before its size is known (so
    the worker that reads a record and the device that decodes it agree): the scale factor,
    the crop's place as fractions of the spare rows and columns, the hue, lightness and
    saturation shifts and the mirror."""

    scale: float = 1.0
    crop_y: float = 0.5
    crop_x: float = 0.5
    shift_h: int = 0
    shift_l: int = 0
    shift_s: int = 0
    mirror: bool = False


def draw(aug, rng):
    """The `Draws` of augmentations `aug` (`Augmentation`) from `rng`, always in
    the same order whatever `aug` switches off (so one option does not move the others)."""
    scale, crop_y, crop_x, *shifts, mirror = rng.random(7)      # one double each, whatever the ranges
    scale = aug.min_scale + scale * (aug.max_scale - aug.min_scale)
    shifts = [int(u * (2 * a + 1)) - a for u, a in zip(shifts, (aug.random_h, aug.random_l, aug.random_s))]
    mirror = mirror < 0.5
    return Draws(float(scale), float(crop_y) if aug.random_crop else 0.5, float(crop_x) if aug.random_crop else 0.5,
                 *shifts, bool(mirror and aug.random_mirror))


def draws_of(aug, epoch_seed, index):
    """The `Draws` of record `index` in the epoch seeded `epoch_seed`."""
    return draw(aug, np.random.default_rng([epoch_seed, index]))


def geometry(height, width, size, aug, draws):
    """``((h, w), (y, x))``: the size a ``height x width`` picture is resized to (shorter
    edge to ``aug.resize``, times ``draws.scale``, at least `size`) and the corner of the
    `size` crop taken from it (``draws.crop_y/x`` of the spare rows and columns; centred
    without ``random_crop``)."""
    out_h, out_w = size
    h, w = height, width
    if aug.resize > 0:
        factor = aug.resize / min(h, w)
        h, w = max(1, round(h * factor)), max(1, round(w * factor))
    h, w = max(out_h, round(h * draws.scale)), max(out_w, round(w * draws.scale))
    spare_y, spare_x = h - out_h, w - out_w
    return (h, w), (min(int(draws.crop_y * (spare_y + 1)), spare_y), min(int(draws.crop_x * (spare_x + 1)), spare_x))


def _hsl_jitter(rgb, draws):
    """Shift hue, lightness and saturation by the draws (OpenCV's 8-bit HLS: hue in 0..179,
    wrapping; the others clipped to 0..255)."""
    hls = cv2.cvtColor(rgb, cv2.COLOR_RGB2HLS).astype(np.int16)
    hls[..., 0] = (hls[..., 0] + draws.shift_h) % 180
    hls[..., 1:] = np.clip(hls[..., 1:] + np.array([draws.shift_l, draws.shift_s], np.int16), 0, 255)
    return cv2.cvtColor(hls.astype(np.uint8), cv2.COLOR_HLS2RGB)


def augment(rgb, size, aug, draws):
    """`rgb` (h, w, 3) uint8 made into an input of `size` (height, width): resized and
    cropped as `geometry` says, HSL-jittered and mirrored as `draws` (`Draws`) say."""
    (h, w), (y, x) = geometry(*rgb.shape[:2], size, aug, draws)
    if (h, w) != rgb.shape[:2]:
        rgb = resize(rgb, (h, w))
    rgb = rgb[y:y + size[0], x:x + size[1]]
    if draws.shift_h or draws.shift_l or draws.shift_s:
        rgb = _hsl_jitter(rgb, draws)
    return rgb[:, ::-1] if draws.mirror else rgb
