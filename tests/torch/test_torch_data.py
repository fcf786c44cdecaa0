"""Units of the PyTorch input (``train.torch_data``) and the backend's device choice."""
import itertools

import cv2
import numpy as np
import pytest
import torch

from torch_recs import write_rec
from train import data_iter, torch_data
from train.backend_torch import TorchDeviceError, smoothed_cross_entropy, training_device


def test_workers_read_the_parts_of_one_workers_batches():
    one = torch_data.epoch_order(103, 7, 8)
    parts = [torch_data.epoch_order(103, 7, 4, rank, 2) for rank in (0, 1)]
    assert len(one) == 96 and len(set(one.tolist())) == 96
    for b in range(len(one) // 8):
        halves = [part[4 * b:4 * b + 4].tolist() for part in parts]
        assert one[8 * b:8 * b + 8].tolist() == halves[0] + halves[1]
    assert not np.array_equal(one, torch_data.epoch_order(103, 8, 8))      # another epoch, another order


def test_augmentations_keep_the_input_size_and_depend_on_the_seed_only():
    rgb = np.random.RandomState(0).randint(0, 256, (40, 50, 3)).astype(np.uint8)
    aug = data_iter.Augmentation(random_mirror=True, random_crop=True, min_scale=0.9, max_scale=1.3, random_h=20,
                                 random_s=20, random_l=20, resize=36)
    out = [torch_data.augment(rgb, (32, 32), aug, np.random.default_rng([3, i])) for i in (1, 1, 2)]
    assert out[0].shape == (32, 32, 3) and out[0].dtype == np.uint8
    assert np.array_equal(out[0], out[1]) and not np.array_equal(out[0], out[2])
    centred = torch_data.augment(rgb, (32, 32), data_iter.NO_AUGMENTATION, np.random.default_rng(0))
    assert np.array_equal(centred, rgb[4:36, 9:41])


def test_an_undecodable_picture_is_named(tmp_path):
    good = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    count = itertools.count()
    rec = write_rec(str(tmp_path / "bad"), 6, 3, seed=0,
                    pictures=lambda label, rng: b"not a jpeg" if next(count) == 3 else good)[0]
    record = data_iter.open_record_file(rec)
    dataset = torch_data.RecordImages(record, (3, 8, 8))
    named = r"bad\.rec: offset \d+, product \d+: record 3, image \d+: its 10-byte picture will not decode"
    with pytest.raises(data_iter.UndecodablePictureError, match=named):
        list(torch_data.batches(dataset, np.arange(record.num_records), 2, workers=1, drop_last=False))


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
