"""Training and validation input of the MXNet backend: MXNet's C++ ``ImageRecordIter`` over
the indexed RecordIO files (``data.record_file``).

Why a fresh iterator per epoch: ``ImageRecordIter.reset()`` reshuffles with a random
stream that continues from the previous epochs, and with ``round_batch`` it starts the
next epoch where the last batch's padding ended. A new iterator seeded with
``seed + epoch`` makes each epoch's order and augmentation a function of (seed, epoch)
only, so a resumed run sees exactly the data an uninterrupted one would have seen.

``round_batch=False`` is not used: in MXNet 1.9.1 it fills the last batch with stale
memory and still reports ``pad == 0``; with ``round_batch=True`` a fresh iterator's last
batch wraps around to the first records and ``pad`` counts them.
"""
import logging

import mxnet as mx

from data import recordio
from data.record_file import DataFileError, UndecodablePictureError, undecodable_pictures
from models.mxnet_nets.runs import mxnet_message
from train.inputs import NO_AUGMENTATION
from train.logs import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)


def iter_kwargs(augmentation):
    """``ImageRecordIter``'s options of a ``train.inputs.Augmentation``."""
    aug = augmentation
    return dict(rand_mirror=aug.random_mirror, rand_crop=aug.random_crop, min_random_scale=aug.min_scale,
                max_random_scale=aug.max_scale, random_h=aug.random_h, random_s=aug.random_s,
                random_l=aug.random_l, resize=aug.resize)


def located_errors(record, make_batches):
    """The batches of the iterator over `record` that `make_batches()` creates (MXNet's reads
    its first batch at once); an MXNet error reading them (a picture it cannot decode stops it
    with ``!ssize.empty() in function 'resize'``) becomes an error naming the file, and the
    record, product and image when a picture will not decode."""
    try:
        yield from make_batches()
    except mx.base.MXNetError as err:
        raise _reading_error(record, mxnet_message(err)) from None


def _reading_error(record, message):
    log.error("reading %s failed (%s): looking for pictures that will not decode", record.rec, message)
    bad = undecodable_pictures(record)
    if not bad:
        return DataFileError("reading %s failed: %s" % (record.rec, message))
    i, problem = bad[0]
    with open(record.rec, "rb") as f:
        _, _, product_id, image_number = recordio.IR_HEADER.unpack_from(
            recordio.read_record(f, int(record.offsets[i]))[0])
    return UndecodablePictureError(
        record.rec, int(record.offsets[i]), product_id,
        "record %d, image %d %s (MXNet: %s); %d picture(s) of the file will not decode: convert it again with "
        "data.bson2rec, which checks every picture (--skip-bad leaves them out)"
        % (i, image_number, problem, message, len(bad)))


def image_iter(record, batch_size, image_shape, mean, scale, *, shuffle=False, seed=0,
               augmentation=NO_AUGMENTATION, num_parts=1, part_index=0, threads=4):
    """An ``ImageRecordIter`` yielding float32 NCHW RGB batches ``(pixel - mean) * scale``.

    It keeps MXNet's default ``ctx='gpu'`` implementation also on CPUs: it decodes ahead in
    a thread and reuses a batch's memory only after the engine says every operation
    reading it is done. The ``ctx='cpu'`` one decodes each batch into the same arrays
    without telling the engine, so the asynchronous forward pass of the previous batch
    reads overwritten images (tests/test_train_units.py shows it).

    With ``seed_aug`` MXNet reseeds the augmentation of the record at batch position i
    with ``seed_aug + i``: `augmentation_seed` spaces the seeds of different epochs apart.
    """
    return mx.io.ImageRecordIter(
        path_imgrec=record.rec, path_imgidx=record.idx, data_shape=tuple(image_shape), batch_size=batch_size,
        shuffle=shuffle, seed=seed, seed_aug=augmentation_seed(seed), num_parts=num_parts, part_index=part_index,
        preprocess_threads=threads, mean_r=mean[0], mean_g=mean[1], mean_b=mean[2], scale=scale,
        round_batch=True, verbose=False, **iter_kwargs(augmentation))


def augmentation_seed(seed):
    """``seed_aug`` of an iterator seeded `seed`: 65537 apart, more than any batch size."""
    return seed * 65537 % 2 ** 31
