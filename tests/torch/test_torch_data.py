"""Units of the PyTorch input (``train.torch_backend.loader``, ``train.inputs``) and the backend's device choice."""
import itertools

import cv2
import numpy as np
import pytest
import torch

from data.errors import DataInputError
from helpers import damage_record, marker_in_scan
from torch_recs import write_rec
from train.torch_backend.backend import TorchDeviceError, smoothed_cross_entropy, training_device
from models import backends
from train import inputs
from train.torch_backend import loader
from data import record_file, recordio
from data.images import decode_rgb


def test_workers_read_the_parts_of_one_workers_batches():
    one = inputs.epoch_order(103, 7, 8)
    parts = [inputs.epoch_order(103, 7, 4, rank, 2) for rank in (0, 1)]
    assert len(one) == 96 and len(set(one.tolist())) == 96
    for b in range(len(one) // 8):
        halves = [part[4 * b:4 * b + 4].tolist() for part in parts]
        assert one[8 * b:8 * b + 8].tolist() == halves[0] + halves[1]
    assert not np.array_equal(one, inputs.epoch_order(103, 8, 8))      # another epoch, another order


FULL = inputs.Augmentation(random_mirror=True, random_crop=True, min_scale=0.9, max_scale=1.3, random_h=20,
                              random_s=20, random_l=20, resize=36)


def test_augmentations_keep_the_input_size_and_depend_on_the_seed_only():
    rgb = np.random.RandomState(0).randint(0, 256, (40, 50, 3)).astype(np.uint8)
    out = [inputs.augment(rgb, (32, 32), FULL, inputs.draws_of(FULL, 3, i)) for i in (1, 1, 2)]
    assert out[0].shape == (32, 32, 3) and out[0].dtype == np.uint8
    assert np.array_equal(out[0], out[1]) and not np.array_equal(out[0], out[2])
    centred = inputs.augment(rgb, (32, 32), inputs.NO_AUGMENTATION, inputs.Draws())
    assert np.array_equal(centred, rgb[4:36, 9:41])


def test_an_option_switched_off_does_not_move_the_other_draws():
    mirror_only = inputs.Augmentation(random_mirror=True)
    for i in range(20):
        assert inputs.draws_of(FULL, 5, i).mirror == inputs.draws_of(mirror_only, 5, i).mirror
    assert {inputs.draws_of(mirror_only, 5, i).mirror for i in range(20)} == {False, True}
    assert inputs.draws_of(mirror_only, 5, 0).shift_h == 0 and inputs.draws_of(mirror_only, 5, 0).scale == 1


@pytest.mark.parametrize("epoch_seed", [0, 7, 1000003 * 12345 + 3, 2 ** 32 - 1, 2 ** 32, 2 ** 64 + 5, 2 ** 130 + 1])
def test_the_draws_of_a_batch_are_numpys_generator_per_record(epoch_seed):
    """seeded_uniforms computes numpy's default_rng([seed, record]).random(k) for many records
    at once: the same doubles bit for bit, seeds of one to five 32-bit words included."""
    indices = np.concatenate([[0, 1, 2 ** 32 - 1], np.random.RandomState(epoch_seed % 2 ** 32).randint(0, 2 ** 31, 60)])
    expected = np.stack([np.random.default_rng([epoch_seed, int(i)]).random(7) for i in indices])
    assert np.array_equal(inputs.seeded_uniforms(epoch_seed, indices, 7), expected)
    assert inputs.draws_of_records(FULL, epoch_seed, indices[:5]) == [inputs.draws_of(FULL, epoch_seed, int(i))
                                                                       for i in indices[:5]]


def test_the_geometry_resizes_the_shorter_edge_scales_and_keeps_the_crop_inside():
    aug = inputs.Augmentation(random_crop=True, min_scale=1.5, max_scale=1.5, resize=40)
    assert inputs.geometry(80, 100, (32, 32), aug, inputs.Draws(scale=1.5, crop_y=0.0, crop_x=0.999)) == \
        ((60, 75), (0, 43))
    # A picture smaller than the input is brought up to it; nothing is left to crop.
    assert inputs.geometry(20, 10, (32, 32), inputs.NO_AUGMENTATION, inputs.Draws()) == ((32, 32), (0, 0))


def _pictures(tmp_path, count=24, sizes=((48, 40),)):
    rng = np.random.RandomState(1)
    pictures = [cv2.imencode(".jpg", cv2.GaussianBlur(rng.randint(0, 256, (*sizes[k % len(sizes)], 3))
                                                      .astype(np.uint8), (5, 5), 0))[1].tobytes() for k in range(count)]
    rec = write_rec(str(tmp_path / "pictures"), count, 3, seed=0, pictures=lambda label, r: pictures[r.randint(count)])[0]
    return record_file.open_record_file(rec)


def _both_places(record, aug, shape=(3, 32, 32)):
    order = np.arange(record.num_records)
    return [torch.cat([pixels for pixels, _ in loader.batches(record, order, 8, shape, aug, 11, workers, place,
                                                                 drop_last=False)])
            for place, workers in ((backends.WORKER_DECODE, 1), (backends.DEVICE_DECODE, 1))]


def test_decoding_on_the_device_crops_and_mirrors_the_pictures_the_workers_do(tmp_path):
    """libjpeg-turbo on the CPU decodes as OpenCV does, and crops and mirrors move pixels only."""
    record = _pictures(tmp_path)
    on_workers, on_device = _both_places(record, inputs.Augmentation(random_mirror=True, random_crop=True))
    assert on_workers.dtype == on_device.dtype == torch.uint8 and on_workers.shape == (record.num_records, 3, 32, 32)
    assert torch.equal(on_workers, on_device)


def test_decoding_on_the_device_resizes_as_opencv_and_jitters_the_colours_nearly_so(tmp_path):
    record = _pictures(tmp_path)
    scaled = inputs.Augmentation(random_mirror=True, random_crop=True, min_scale=0.9, max_scale=1.3, resize=36)
    assert torch.equal(*_both_places(record, scaled))          # OpenCV's resize, its fixed point included
    on_workers, on_device = _both_places(record, FULL)
    difference = (on_workers.int() - on_device.int()).abs().float()
    assert difference.mean() < 0.3 and (difference > 2).float().mean() < 2e-3


def test_pictures_of_several_sizes_are_augmented_on_the_device_as_the_workers_do(tmp_path):
    """augment_on_device resizes and crops together the pictures that share a size and a geometry."""
    record = _pictures(tmp_path, sizes=((48, 40), (40, 48), (32, 32), (30, 20)))
    for aug in (inputs.Augmentation(random_mirror=True),
                inputs.Augmentation(random_mirror=True, random_crop=True, min_scale=0.9, max_scale=1.3, resize=36)):
        assert torch.equal(*_both_places(record, aug))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_workers_batch_holds_each_records_augmented_picture(tmp_path, workers):
    """The batch a worker writes in place (shared memory, NHWC, seen as NCHW) holds, for each
    record, the picture ``augment`` makes of it with its draws, and its label."""
    record = _pictures(tmp_path, sizes=((48, 40), (36, 36)))
    order = np.random.RandomState(0).permutation(record.num_records)
    got = list(loader.batches(record, order, 5, (3, 32, 32), FULL, 9, workers, drop_last=False))
    pixels, labels = torch.cat([p for p, _ in got]), torch.cat([l for _, l in got])
    assert pixels.shape == (record.num_records, 3, 32, 32) and pixels.dtype == torch.uint8
    with open(record.rec, "rb") as f:
        for position, index in enumerate(order):
            (_, label, _, _), jpeg = recordio.unpack(recordio.read_record(f, int(record.offsets[index]))[0])
            expected = inputs.augment(decode_rgb(jpeg), (32, 32), FULL, inputs.draws_of(FULL, 9, int(index)))
            assert np.array_equal(pixels[position].permute(1, 2, 0).numpy(), expected)
            assert labels[position] == int(label)


def test_the_colour_jitter_on_the_device_is_opencvs():
    """Up to float rounding: a hue exactly between two 8-bit values may round the other way."""
    rng = np.random.RandomState(2)
    pixels = rng.randint(0, 256, (6, 40, 40, 3)).astype(np.uint8)
    pixels[0] = 128                                               # grey: no hue
    shifts = rng.randint(-20, 21, (6, 3))
    expected = np.stack([inputs._hsl_jitter(p, inputs.Draws(shift_h=h, shift_l=l, shift_s=s))
                         for p, (h, l, s) in zip(pixels, shifts)])
    got = loader._hsl_jitter_on_device(torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.from_numpy(shifts))
    difference = np.abs(got.permute(0, 2, 3, 1).numpy().astype(int) - expected)
    assert difference.mean() < 0.2 and (difference > 2).mean() < 1e-3 and difference.max() <= 8
    assert np.array_equal(got[0].permute(1, 2, 0).numpy(), expected[0])


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")
def test_a_damaged_picture_that_opencv_decodes_is_decoded_alike_in_both_places(tmp_path):
    """One rule in both decode places: a picture is good where OpenCV decodes it. This one
    passes the structural check, OpenCV decodes it, the device's decoder (libjpeg-turbo here)
    refuses it: the device path decodes it with OpenCV, to the input workers' pixels."""
    from torchvision.io import decode_jpeg
    from data.images import decode_rgb
    from data.jpeg import picture_problem
    count = itertools.count()
    pictures = {}

    def picture(label, rng):
        jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(rng.randint(0, 256, (40, 40, 3)).astype(np.uint8), (5, 5), 0))[1]
        pictures[next(count)] = jpeg = marker_in_scan(jpeg.tobytes()) if len(pictures) == 5 else jpeg.tobytes()
        return jpeg

    record = record_file.open_record_file(write_rec(str(tmp_path / "damaged"), 8, 3, seed=0, pictures=picture)[0])
    damaged = pictures[5]
    assert picture_problem(damaged) is None and decode_rgb(damaged) is not None
    with pytest.raises(RuntimeError, match="Bogus Huffman table definition"):
        decode_jpeg(torch.frombuffer(bytearray(damaged), dtype=torch.uint8))
    on_workers, on_device = _both_places(record, inputs.Augmentation(random_mirror=True, random_crop=True))
    assert torch.equal(on_workers, on_device)


@pytest.mark.parametrize("place", [backends.WORKER_DECODE, backends.DEVICE_DECODE])
def test_an_undecodable_picture_is_named(tmp_path, place):
    good = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    count = itertools.count()
    rec = write_rec(str(tmp_path / "bad"), 6, 3, seed=0,
                    pictures=lambda label, rng: b"not a jpeg" if next(count) == 3 else good)[0]
    record = record_file.open_record_file(rec)
    named = r"bad\.rec: offset \d+, product \d+: record 3, image \d+: its 10-byte picture will not decode"
    with pytest.raises(record_file.UndecodablePictureError, match=named):
        list(loader.batches(record, np.arange(record.num_records), 2, (3, 8, 8), workers=1, decode_on=place,
                                drop_last=False))


@pytest.mark.parametrize("place", [backends.WORKER_DECODE, backends.DEVICE_DECODE])
@pytest.mark.parametrize("field, value, named", [
    ("magic", 0, r"offset {offset}: record 5 is damaged: its frame \(magic word 0x00000000"),
    ("length", 0, r"offset {offset}: record 5 ends at offset {end} but the index puts record 6 at"),
    ("label", 7.0, r"offset {offset}, product \d+: record 5 \(image \d+\) has label 7, not a class id of the "
                   r"network's --num-classes 3 outputs \(0..2\): the .rec was changed after its conversion report"),
    ("label", 1.5, r"offset {offset}, product \d+: record 5 \(image \d+\) has label 1.5, not a class id"),
])
def test_a_record_changed_after_its_check_is_named_by_the_worker_that_reads_it(tmp_path, place, field, value, named):
    """The DataLoader worker process that reads a damaged record, or a label that is not a
    class id, says so (no exception crosses from it); the main process names the record."""
    rec = write_rec(str(tmp_path / "changed"), 6, 3, seed=0)[0]
    record = record_file.open_record_file(rec)        # checked as training opens it, then changed
    offset = damage_record(rec, 5, field, value)
    with pytest.raises(DataInputError, match=named.format(offset=offset, end=offset + 8)):
        list(loader.batches(record, np.arange(record.num_records), 2, (3, 8, 8), workers=1, decode_on=place,
                            drop_last=False, num_classes=3))


def test_label_smoothing_is_mxnets():
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    log_prob = torch.log_softmax(logits, 1)
    target = torch.full((5, 4), 0.1 / 3)
    target[torch.arange(5), labels] = 0.9
    assert torch.allclose(smoothed_cross_entropy(logits, labels, 0.1, 4), -(target * log_prob).sum(1), atol=1e-6)


def test_a_reduced_precision_needs_a_gpu():
    assert training_device("", "float32") == torch.device("cpu")
    with pytest.raises(TorchDeviceError, match="bfloat16 needs a GPU"):
        training_device("", "bfloat16")
