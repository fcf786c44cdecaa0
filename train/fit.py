"""The training driver: the policy of a run, framework-free; a ``train.backend.Backend`` does the rest.

``run(config)`` is the whole command; the pieces it is built from (``start_point``,
``train_epoch``, ``prepare_data``, ``save_epoch``) are importable on their own. The
driver decides where the run starts (fresh, ``--from-run``, ``--load-epoch``,
``--resume``), the learning rate of every batch, the freeze phases, the epoch loop, the
logs and the run folder (``models.runs``); the backend (``--backend``, one of
``models.backends``: MXNet, ``train.mxnet_backend``, or PyTorch, ``train.torch_backend``)
builds and trains the network, evaluates it and writes its weights.

Exactness of a resume: an epoch's data order and augmentation depend on (seed, epoch)
only (``train.inputs``), the backend is reseeded per epoch, the learning rate is a pure
function of the position in the schedule, and the checkpoint holds the parameters
(including BatchNorm statistics) and the full optimizer state.
"""
import contextlib
import dataclasses
import math
import os
import time

import numpy as np
from tqdm import tqdm

import models
from data.atomic import exclusive_output
from data.record_file import (DataFileError, RecordFile, RecordHeaders, check_labels, open_record_file,
                              read_record_headers)
from models import runs, training_log
from models.backends import get_backend
from models.families import family_of
from train import logs, metrics
from train.backend import create_backend
from train.config import changed_options
from train.curves import plot_curves
from train.inputs import Augmentation, batches_per_epoch, train_epoch_seed
from train.schedule import learning_rate_at


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclasses.dataclass
class EpochResult:
    metrics: dict
    seconds: float
    samples_per_sec: float
    lr: float


def _check_finite(values, epoch, batch):
    if not all(math.isfinite(v) for v in values.values()):
        raise NonFiniteLossError("training diverged at Epoch[%d] Batch [%d]: %s; lower --lr, check the input "
                                 "normalisation, or resume from the last checkpoint"
                                 % (epoch, batch, ", ".join("%s=%s" % kv for kv in values.items())))


def train_epoch(backend, batches, epoch, num_batches, lr_at, logger, disp_batches=20, top_k=5, progress=False):
    """Train on the first `num_batches` batches of `batches`; log like MXNet's Speedometer,
    show a tqdm bar of images (and img/s) when `progress` and stderr is a terminal.

    `lr_at(progress_in_epochs)` gives the learning rate before each batch. Returns an
    `EpochResult` whose metrics cover the whole epoch, including the smoothed ``loss``.
    """
    backend.take_window()               # the first window starts with the epoch
    totals, samples = np.zeros(4), 0
    tic = start = time.time()
    lr = None
    bar = tqdm(unit="img", unit_scale=True, desc="Epoch[%d]" % epoch, leave=False,
               disable=None if progress else True)   # None: only on a terminal
    for nbatch, batch in enumerate(batches):
        if nbatch == num_batches:
            break
        lr = lr_at(epoch + nbatch / num_batches)
        images = backend.train_step(batch, lr)
        if nbatch == 0:
            bar.reset(total=num_batches * images)
        done = nbatch + 1
        if done % disp_batches == 0 or done == num_batches:
            window_totals, window_samples = backend.take_window()
            values = metrics.metrics_from_totals(window_totals, window_samples, top_k, with_loss=True)
            _check_finite(values, epoch, done)
            speed = window_samples / max(time.time() - tic, 1e-9)
            if done % disp_batches == 0:
                logger.info(training_log.speed_line(epoch, done, speed, metrics.metrics_from_totals(window_totals,
                                                                                             window_samples, top_k)))
            bar.set_postfix(acc="%.3f" % values[metrics.ACCURACY], ce="%.3f" % values[metrics.CROSS_ENTROPY])
            totals += window_totals
            samples += window_samples
            tic = time.time()
        bar.update(images)
    bar.close()
    if samples == 0:
        raise DataFileError("the training iterator ended before the first batch")
    backend.finish_epoch()
    seconds = time.time() - start
    return EpochResult(metrics.metrics_from_totals(totals, samples, top_k, with_loss=True), seconds,
                       samples / seconds, lr)


@dataclasses.dataclass(frozen=True)
class StartPoint:
    """Where a run starts: epochs already done, and the files to load (or None)."""

    epoch: int = 0
    params: str = None
    states: str = None
    parent_meta: dict = None   # the checkpoint's JSON when starting from another run
    config_overrides: dict = None   # the architecture of the checkpoint's network (its JSON's)
    weights_format: str = runs.GLUON_PARAMS   # the format of `params` (models.runs)
    ema: str = None            # the moving average of the weights a resumed run continues


def start_point(config, logger, check_loadable):
    """Where this run starts: with ``--resume`` the run folder's last epoch if it is later
    than ``--load-epoch`` (or that is not given), else ``--load-epoch``, else another
    run's weights (``--from-run``), else fresh (``--pretrained`` or random).

    A resumed run continues with the checkpoint's optimizer state (moments, update
    counts, and with them the optimizer's weight decay and momentum; the learning rate
    follows this run's schedule), unless the optimizer or ``--dtype`` changed: then it
    starts a fresh optimizer state, as the reference did when it switched optimizers.
    It continues the checkpoint's moving average of the weights, when it has one.

    A checkpoint that ``--resume`` finds damaged (a truncated ``.params`` or ``.states``)
    is skipped, with a warning naming the file, for the last complete epoch that loads.
    `check_loadable(run_dir, epoch, states)` is the backend's (``Backend.check_loadable``).
    """
    places = config.checkpoint
    if places.resume:
        later = [epoch for epoch in runs.complete_epochs(places.model_dir) if epoch > (places.load_epoch or 0)]
        for epoch in reversed(later):
            try:
                return _resume_point(config, epoch, logger, check_loadable)
            except runs.DamagedCheckpointError as err:
                logger.warning("%s; resuming from the epoch before", err)
        if places.load_epoch is None:
            logger.info("no %scheckpoint in %s: starting afresh", "loadable " if later else "", places.model_dir)
    if places.load_epoch is not None:
        return _resume_point(config, places.load_epoch, logger, check_loadable)
    if places.from_run:
        run_dir, parent_epoch = runs.resolve_checkpoint(places.from_run)
        parent_meta = runs.load_meta(run_dir, parent_epoch)
        weights_format = _loadable_format(config, parent_meta, run_dir)
        check_loadable(run_dir, parent_epoch, states=False)
        return StartPoint(0, runs.params_path(run_dir, parent_epoch, weights_format), parent_meta=parent_meta,
                          config_overrides=parent_meta.get("config_overrides"), weights_format=weights_format)
    pretrained = config.network.pretrained
    own_weights = family_of(config.network.network).default_weights
    if pretrained and pretrained != own_weights and not os.path.isfile(pretrained):
        raise runs.CheckpointError("ImageNet weights %s not found: put the published file there, or leave "
                                         "--pretrained out to train from random initialisation" % pretrained)
    return StartPoint()


def _loadable_format(config, meta, run_dir):
    """The weights format of checkpoint `meta` of `run_dir`; a `CheckpointError` when this
    run's backend cannot load it (``models.backends``)."""
    backend = get_backend(config.compute.backend)
    if not backend.loads(meta):
        raise runs.CheckpointError("%s holds %s weights, which --backend %s cannot load (%s)"
                                   % (run_dir, runs.weights_format(meta), backend.name,
                                      ", ".join(backend.weight_formats)))
    return runs.weights_format(meta)


def _resume_point(config, epoch, logger, check_loadable):
    if epoch == 0:
        raise runs.CheckpointError("--load-epoch counts completed epochs; epoch 0 has no checkpoint")
    run_dir, epoch = runs.resolve_checkpoint(config.checkpoint.model_dir, epoch)
    meta = runs.load_meta(run_dir, epoch)
    network, classes = config.network.network, config.data.num_classes
    if (meta["model"], meta["classes"]) != (network, classes):
        raise runs.CheckpointError(
            "%s holds a %s with %d classes; this run is a %s with %d: use --from-run to start a different "
            "network from it" % (run_dir, meta["model"], meta["classes"], network, classes))
    weights_format = _loadable_format(config, meta, run_dir)
    params = runs.params_path(run_dir, epoch, weights_format)
    ema = os.path.join(run_dir, meta["ema_weights"]) if meta.get("ema_weights") else None
    saved = meta["args"]
    now = (config.optimizer.optimizer, config.network.dtype)
    fresh_optimizer = (saved["optimizer"], saved["dtype"]) != now
    check_loadable(run_dir, epoch, states=not fresh_optimizer)
    changed = changed_options(saved, config)
    if changed:
        logger.warning("resuming after epoch %d of %s with options changed since: %s", epoch, run_dir,
                       ", ".join("%s %s -> %s" % change for change in changed))
    if fresh_optimizer:
        logger.info("optimizer %s/%s differs from the checkpoint's %s/%s: fresh optimizer state",
                    *now, saved["optimizer"], saved["dtype"])
        return StartPoint(epoch, params, config_overrides=meta.get("config_overrides"), weights_format=weights_format,
                          ema=ema)
    kept = [name for name, _, _ in changed if name in ("wd", "mom", "wd_sgd_only")]
    if kept:
        logger.warning("resuming keeps the checkpoint's optimizer settings %s",
                       ", ".join("%s=%s" % (name, saved.get(name)) for name in kept))
    return StartPoint(epoch, params, runs.states_path(run_dir, epoch), config_overrides=meta.get("config_overrides"),
                      weights_format=weights_format, ema=ema)


@dataclasses.dataclass(frozen=True)
class RunData:
    """The checked inputs of a run (the backend makes the iterators over them)."""

    spec: "models.ModelSpec"
    image_shape: tuple
    train: RecordFile
    val: RecordFile                    # None: no validation
    val_headers: RecordHeaders         # None unless this process validates
    num_batches: int                   # per epoch and worker
    augmentation: Augmentation


def prepare_data(config, validates, num_workers, logger):
    """Open and check the data files of a run before the first batch: they exist, match their
    index, and every class id fits ``--num-classes`` (``data.record_file.check_labels``).

    A backend whose input does not check each record as it reads it (``models.backends``'
    ``checks_records``: MXNet's C++ reader aborts the process on a damaged record and trains
    on any label) gets every record's frame and label checked here, in one pass over the
    training file (``data.record_file.read_record_headers``: 0.3 µs a record in the page
    cache, 4 s for the 12 M records of the full training side; from disk, one read of it)."""
    data, aug = config.data, config.augmentation
    spec = models.get_spec(config.network.network, normalization=config.network.normalization)
    train = open_record_file(data.data_train, "training")
    headers = None
    if not get_backend(config.compute.backend).checks_records:
        logger.info("checking the frame and label of every record of %s (%d records)", train.rec, train.num_records)
        headers = read_record_headers(train)
    check_labels(train, data.num_classes, headers, logger=logger)
    val = open_record_file(data.data_val, "validation") if data.data_val else None
    val_headers = read_record_headers(val) if val is not None and validates else None
    if val_headers is not None:
        check_labels(val, data.num_classes, val_headers)
        logger.info("validation: %d images of %d products, %d of the %d classes", len(val_headers.labels),
                    len(np.unique(val_headers.product_ids)), len(np.unique(val_headers.labels)), data.num_classes)
    augmentation = Augmentation(
        random_mirror=bool(aug.random_mirror), random_crop=bool(aug.random_crop),
        min_scale=aug.min_random_scale, max_scale=aug.max_random_scale, random_h=aug.max_random_h,
        random_s=aug.max_random_s, random_l=aug.max_random_l, resize=aug.resize)
    num_batches = batches_per_epoch(train.num_records, config.optimizer.batch_size, num_workers,
                                              data.epoch_size, config.optimizer.grad_accum)
    return RunData(spec, data.image_shape or (3, spec.input_size, spec.input_size), train, val, val_headers,
                   num_batches, augmentation)


def save_epoch(config, data, backend, record, logger):
    """Checkpoint of the epoch in `record`, then ``metrics.jsonl`` and ``curves.png``. Its
    weights' format is the network family's (``models.families.Family.weights_format``)."""
    spec, run_dir = data.spec, config.checkpoint.model_dir
    preprocess = runs.Preprocessing(data.image_shape, "RGB", spec.mean, spec.scale, spec.normalization)
    meta = runs.epoch_meta(backend.framework, config.network.network, config.data.num_classes, preprocess,
                                 config, record, config.network.dropout, config.network.dtype, backend.num_workers,
                                 backend.config_overrides, family_of(config.network.network).weights_format,
                                 ema=config.ema.ema_decay > 0)
    logger.info(training_log.checkpoint_line(backend.save(run_dir, record["epoch"], meta)))
    history = runs.write_metrics_history(run_dir, record["epoch"])
    plot_curves(history, os.path.join(run_dir, "curves.png"), title=run_dir)


def _log_arguments(logger, config, start):
    """The argument dump; ``load_epoch`` says where the run really starts (also with --resume)."""
    logger.info("arguments:")
    for line in training_log.argument_lines(dict(config.fields(), load_epoch=start.epoch)):
        logger.info(line)


def run(config):
    """Train as `config` (a ``train.config.TrainConfig``) says; returns this process's per-epoch records.

    Worker 0 (the only worker unless distributed) writes the run folder and logs to
    ``train.log``; other workers log to the console. Worker 0 validates, with every other
    worker when the backend shares validation (``Backend.shares_validation``).
    """
    backend = create_backend(config.compute.backend, config)
    # One writer per run folder: the chief holds its lock for the whole run (a second run
    # into it fails at once) and first removes what a run killed while saving left there.
    with exclusive_output(config.checkpoint.model_dir) if backend.rank == 0 else contextlib.nullcontext():
        return _run(config, backend)


def _run(config, backend):
    chief, run_dir, schedule, log = backend.rank == 0, config.checkpoint.model_dir, config.schedule, config.logging
    if chief:
        os.makedirs(run_dir, exist_ok=True)
    logger = logs.setup_logging(os.path.join(run_dir, "train.log") if chief else None)
    if backend.num_workers > 1:
        logger.info("worker %d of %d", backend.rank, backend.num_workers)
    start = start_point(config, logger, backend.check_loadable)
    _log_arguments(logger, config, start)
    if start.epoch >= schedule.num_epochs:
        logger.info("%s already holds epoch %d of --num-epochs %d: nothing to train", run_dir, start.epoch,
                    schedule.num_epochs)
        return []
    validates = chief or backend.shares_validation
    data = prepare_data(config, validates, backend.num_workers, logger)
    logger.info("%d training images, %d batches of %d per epoch and worker, %d worker(s), %d device(s): %s",
                data.train.num_records, data.num_batches, config.optimizer.batch_size, backend.num_workers,
                len(backend.devices), backend.devices)
    backend.seed(log.seed)
    backend.build(start, data, logger)

    def lr_at(progress):
        return learning_rate_at(progress, config.optimizer.lr, schedule.lr_step_epochs, schedule.lr_factor,
                                schedule.warmup_epochs, schedule.warmup_begin_lr, schedule.lr_schedule,
                                schedule.cosine_epochs, schedule.min_lr)

    records = []
    for epoch in range(start.epoch, schedule.num_epochs):
        frozen = epoch < schedule.freeze_epochs
        if backend.set_frozen(frozen):
            logger.info("Epoch[%d] %s", epoch, "training only the parameters matching %r" % schedule.freeze_keep
                        if frozen else "training all parameters")
        backend.seed(train_epoch_seed(log.seed, epoch) + backend.rank)
        result = train_epoch(backend, backend.train_batches(data, epoch), epoch, data.num_batches, lr_at, logger,
                             log.disp_batches, log.top_k, progress=log.progress)
        for line in training_log.epoch_lines(epoch, "Train", {k: v for k, v in result.metrics.items() if k != metrics.LOSS}):
            logger.info(line)
        logger.info(training_log.time_cost_line(epoch, result.seconds))
        val_metrics = backend.evaluate(data) if data.val is not None and validates else {}
        if not chief:
            continue
        for line in training_log.epoch_lines(epoch, "Validation", val_metrics):
            logger.info(line)
        record = {"epoch": epoch + 1, "lr": result.lr, "time_cost": result.seconds,
                  "samples_per_sec": result.samples_per_sec, "train": dict(result.metrics), "val": dict(val_metrics)}
        save_epoch(config, data, backend, record, logger)
        records.append(record)
    return records
