"""What a training epoch reads, framework-free: its order, its seeds, its augmentation draws.

Exactness of a resume: an epoch's order is one global permutation seeded by
`train_epoch_seed` (seed, epoch), dealt to the workers of a distributed run a batch each
in turn (`epoch_order`); the augmentation of a record (`Draws`) is drawn from numpy's
generator seeded by (epoch seed, record number) before the picture is decoded, for a
whole batch at once (`draws_of_records`: the same numbers), so every decoding place
(OpenCV in the PyTorch input workers: `augment_into`; a PyTorch device:
``train.torch_backend.loader.augment_on_device``) draws alike. Both are functions of
(seed, epoch, record) only, so a resumed run reads exactly what an uninterrupted one
reads, and one process reading a global batch of B images reads the union of what n
processes reading B/n each read. MXNet's ``ImageRecordIter`` draws its own
(``train.mxnet_backend.record_iter``), from the same `Augmentation` options and `train_epoch_seed`.

Augmentations follow the options of MXNet's ``ImageRecordIter``, in its order: resize of
the shorter edge, random scale (one resize to the product of both: `geometry`), crop of
the input size (random with ``random_crop``, else centred), HSL jitter, random mirror.
"""
import dataclasses
import functools

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


def _draws(aug, uniforms):
    """The `Draws` of augmentations `aug` (`Augmentation`) of each row of ``(n,
    DRAWS_PER_RECORD)`` `uniforms` in [0, 1): the scale factor, the crop's place, the hue,
    lightness and saturation shifts, the mirror; one double each, whatever `aug` switches
    off (so one option does not move the others)."""
    scale = aug.min_scale + uniforms[:, 0] * (aug.max_scale - aug.min_scale)
    crops = uniforms[:, 1:3] if aug.random_crop else np.full((len(uniforms), 2), 0.5)
    amplitudes = np.array([aug.random_h, aug.random_l, aug.random_s])
    shifts = (uniforms[:, 3:6] * (2 * amplitudes + 1)).astype(np.int64) - amplitudes
    mirror = (uniforms[:, 6] < 0.5) & aug.random_mirror
    return [Draws(*values) for values in zip(scale.tolist(), crops[:, 0].tolist(), crops[:, 1].tolist(),
                                             *shifts.T.tolist(), mirror.tolist())]


def draws_of(aug, epoch_seed, index):
    """The `Draws` of record `index` in the epoch seeded `epoch_seed`."""
    return draws_of_records(aug, epoch_seed, [index])[0]


def draws_of_records(aug, epoch_seed, indices):
    """The `Draws` of each record of `indices` in the epoch seeded `epoch_seed`, from the
    doubles of ``np.random.default_rng([epoch_seed, index]).random(7)``, computed for all
    of them at once (`seeded_uniforms`): 7 µs a record in batches of 256, 25 µs in batches
    of 32, against 90 µs for a numpy generator each (this 2-core machine, loaded)."""
    return _draws(aug, seeded_uniforms(epoch_seed, indices, DRAWS_PER_RECORD))


# ----------------------------------------------------------------------------------------
# numpy's default_rng([seed, index]).random(k), for many indices at once
# ----------------------------------------------------------------------------------------
DRAWS_PER_RECORD = 7
_MASK32 = 0xFFFFFFFF
# numpy.random.SeedSequence's constants (numpy/random/bit_generator.pyx).
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _POOL_SIZE = np.uint32(0xCA01F9DD), np.uint32(0x4973F715), 4
# PCG64's multiplier (numpy/random/src/pcg64/pcg64.h: PCG_DEFAULT_MULTIPLIER_128).
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


def _limbs(value):
    """The four 32-bit limbs of a 128-bit integer, lowest first, as uint64 scalars."""
    return [np.uint64((value >> (32 * k)) & _MASK32) for k in range(4)]


def _seed_words(value):
    """The 32-bit words SeedSequence makes of a non-negative integer (lowest first; 0 is one word)."""
    words = [value & _MASK32]
    value >>= 32
    while value:
        words.append(value & _MASK32)
        value >>= 32
    return words


def _hash_multipliers(count, init, mult):
    """The running multiplier of SeedSequence's hashes, as the ``(before, after)`` pairs of
    its first `count` steps (uint32)."""
    pairs = []
    for _ in range(count):
        pairs.append((np.uint32(init), np.uint32(init * mult & _MASK32)))
        init = init * mult & _MASK32
    return pairs


_ENTROPY_WORDS = 8      # seeds up to 2**224: more than any epoch seed
_HASH_A = _hash_multipliers(_POOL_SIZE * _POOL_SIZE + _POOL_SIZE * (_ENTROPY_WORDS - _POOL_SIZE), _INIT_A, _MULT_A)
_HASH_B = _hash_multipliers(8, _INIT_B, _MULT_B)
_SHIFT16 = np.uint32(16)


def _hashmix(values, multipliers):
    """SeedSequence's ``hashmix`` of uint32 `values`, its running multiplier going from one
    to the other of `multipliers` (uint32 arithmetic wraps as numpy's C code does)."""
    values = values ^ multipliers[0]
    values *= multipliers[1]
    values ^= values >> _SHIFT16
    return values


def _mix(x, y):
    result = x * _MIX_MULT_L
    result -= y * _MIX_MULT_R
    result ^= result >> _SHIFT16
    return result


def _seed_state(epoch_seed, indices):
    """``SeedSequence([epoch_seed, index]).generate_state(8)`` of every index: ``(n, 8)``
    uint64 holding 32-bit words (numpy's mixing, vectorised over the indices)."""
    indices = np.asarray(indices, np.int64)
    if len(indices) and not 0 <= int(indices.min()) <= int(indices.max()) <= _MASK32:
        raise ValueError("record numbers must lie in 0 .. 2**32 - 1")
    words = _seed_words(int(epoch_seed))
    if len(words) >= _ENTROPY_WORDS:
        raise ValueError("epoch seeds must be below 2**%d" % (32 * (_ENTROPY_WORDS - 1)))
    entropy = [np.full(len(indices), word, np.uint32) for word in words] + [indices.astype(np.uint32)]
    steps = iter(_HASH_A)
    zero = np.zeros(len(indices), np.uint32)
    pool = [_hashmix(entropy[i] if i < len(entropy) else zero, next(steps)) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = _mix(pool[dst], _hashmix(pool[src], next(steps)))
    for src in range(_POOL_SIZE, len(entropy)):
        for dst in range(_POOL_SIZE):
            pool[dst] = _mix(pool[dst], _hashmix(entropy[src], next(steps)))
    return np.stack([_hashmix(pool[k % _POOL_SIZE], _HASH_B[k]) for k in range(8)], axis=-1).astype(np.uint64)


# 128-bit numbers as four 32-bit limbs, lowest first, each a uint64 array (or scalar).
_LOW, _SHIFT32 = np.uint64(_MASK32), np.uint64(32)
_PCG_MULT_LIMBS = _limbs(_PCG_MULT)


def _carried(columns):
    """The limbs of the column sums `columns` (each below 2**64), carries moved up, mod 2**128."""
    limbs, carry = [], 0
    for column in columns:
        total = column + carry
        limbs.append(total & _LOW)
        carry = total >> _SHIFT32
    return limbs


def _add128(a, b):
    return _carried([x + y for x, y in zip(a, b)])


def _mul128(a, b):
    """``a * b mod 2**128``: the products of 32-bit limbs (each below 2**64) summed by column."""
    columns = [0, 0, 0, 0]
    for i in range(4):
        for j in range(4 - i):
            product = a[i] * b[j]
            columns[i + j] = columns[i + j] + (product & _LOW)
            if i + j < 3:
                columns[i + j + 1] = columns[i + j + 1] + (product >> _SHIFT32)
    return _carried(columns)


@functools.lru_cache(maxsize=None)
def _pcg_jumps(count):
    """``(multipliers, increments)``, each four limbs of shape ``(count,)``: PCG64's state after
    k = 1..`count` steps is ``state * multipliers[k-1] + inc * increments[k-1]`` (mod 2**128)."""
    multipliers, increments, mult, inc = [], [], 1, 0
    for _ in range(count):
        mult, inc = mult * _PCG_MULT % 2 ** 128, (inc * _PCG_MULT + 1) % 2 ** 128
        multipliers.append(_limbs(mult))
        increments.append(_limbs(inc))
    return [np.array(limb, np.uint64) for limb in zip(*multipliers)], \
        [np.array(limb, np.uint64) for limb in zip(*increments)]


def seeded_uniforms(epoch_seed, indices, count):
    """``(len(indices), count)`` float64 whose row i is ``np.random.default_rng([epoch_seed,
    indices[i]]).random(count)`` bit for bit, for all indices at once: numpy's SeedSequence
    (`_seed_state`), PCG64 seeded from it (state and increment, 128 bits each, held as four
    32-bit limbs), its XSL-RR output and its doubles (the top 53 bits). NumPy keeps these
    streams stable across versions; tests/torch/test_torch_data.py compares them with numpy's."""
    words = _seed_state(epoch_seed, indices).T   # 32-bit words: seed (high, low), sequence (high, low)
    seed, sequence = [words[2], words[3], words[0], words[1]], [words[6], words[7], words[4], words[5]]
    inc = _carried([limb * np.uint64(2) for limb in sequence])             # (sequence << 1) | 1
    inc[0] |= np.uint64(1)
    state = _add128(_mul128(_add128(inc, seed), _PCG_MULT_LIMBS), inc)       # pcg64_srandom_r
    multipliers, increments = _pcg_jumps(count)
    states = _add128(_mul128([limb[:, None] for limb in state], multipliers),
                     _mul128([limb[:, None] for limb in inc], increments))      # (n, count) each
    high = states[3] << _SHIFT32 | states[2]
    low = states[1] << _SHIFT32 | states[0]
    mixed, rotation = high ^ low, states[3] >> np.uint64(26)           # XSL-RR: rotated by the top 6 bits
    output = mixed >> rotation | mixed << ((np.uint64(64) - rotation) & np.uint64(63))
    return (output >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


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
    out = np.empty((*size, 3), np.uint8)
    augment_into(out, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), aug, draws)
    return out


def augment_into(out, bgr, aug, draws):
    """`augment` of the picture `bgr` as OpenCV decodes it (BGR), written into the
    C-contiguous RGB ``(height, width, 3)`` uint8 array `out` (a picture's place in a
    batch): the resize, which treats each channel alike, and the crop are done in BGR, then
    one pass writes `out`: the colour conversion or, mirrored, each row's bytes in reverse
    order (BGR read backwards is the mirrored RGB; 10 µs a 180x180 picture against 23 µs
    for a flip and a conversion)."""
    size = out.shape[:2]
    (h, w), (y, x) = geometry(*bgr.shape[:2], size, aug, draws)
    if (h, w) != bgr.shape[:2]:
        bgr = resize(bgr, (h, w))
    bgr = bgr[y:y + size[0], x:x + size[1]]
    if draws.shift_h or draws.shift_l or draws.shift_s:
        rgb = _hsl_jitter(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), draws)
        out[:] = rgb[:, ::-1] if draws.mirror else rgb
    elif draws.mirror:
        cv2.flip(bgr.reshape(size[0], -1), 1, dst=out.reshape(size[0], -1))
    else:
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out)
