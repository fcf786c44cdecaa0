"""The training loop: data-parallel Gluon training with validation and checkpoints per epoch.

``run(args)`` is the whole command; the pieces it is built from (``start_point``,
``prepare_network``, ``build_training``, ``train_epoch``, ``prepare_data``, ...) are
importable on their own, as are the training step (``train.step``) and the validation
(``train.evaluate``) they use.

Exactness of a resume: an epoch's data order and augmentation depend on (seed, epoch)
only (``data_iter``), ``mx.random`` is reseeded per epoch, the learning rate is a pure
function of the position in the schedule, and the checkpoint holds the parameters
(including BatchNorm statistics) and the full optimizer state.
"""
import contextlib
import dataclasses
import functools
import json
import math
import os
import time

import mxnet as mx
import numpy as np
from mxnet import gluon
from tqdm import tqdm

import models
from data.atomic import atomic_open, exclusive_output
from models.weights import structural_names
from train import checkpoint, data_iter, devices, logs, metrics, optim
from train.curves import plot_curves
from train.evaluate import evaluate
from train.step import LabelSmoothingCrossEntropy, Trainability, TrainStep


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


def train_epoch(step, batches, epoch, num_batches, lr_at, logger, disp_batches=20, top_k=5, progress=False):
    """Train on the first `num_batches` batches of `batches`; log like MXNet's Speedometer,
    show a tqdm bar of images (and img/s) when `progress` and stderr is a terminal.

    `lr_at(progress_in_epochs)` gives the learning rate before each batch. Returns an
    `EpochResult` whose metrics cover the whole epoch, including the smoothed ``loss``.
    """
    window = metrics.RunningSums(top_k)
    totals, samples = np.zeros(4), 0
    tic = start = time.time()
    lr = None
    bar = tqdm(unit="img", unit_scale=True, desc="Epoch[%d]" % epoch, leave=False,
               disable=None if progress else True)   # None: only on a terminal
    for nbatch, batch in enumerate(batches):
        if nbatch == num_batches:
            break
        lr = lr_at(epoch + nbatch / num_batches)
        step.trainer.set_learning_rate(lr)
        step(batch.data[0], batch.label[0], window)
        if nbatch == 0:
            bar.reset(total=num_batches * batch.data[0].shape[0])
        done = nbatch + 1
        if done % disp_batches == 0 or done == num_batches:
            window_totals, window_samples = window.totals(), window.samples
            values = metrics.metrics_from_totals(window_totals, window_samples, top_k, with_loss=True)
            _check_finite(values, epoch, done)
            speed = window_samples / max(time.time() - tic, 1e-9)
            if done % disp_batches == 0:
                logger.info(logs.speed_line(epoch, done, speed, metrics.metrics_from_totals(window_totals,
                                                                                             window_samples, top_k)))
            bar.set_postfix(acc="%.3f" % values[metrics.ACCURACY], ce="%.3f" % values[metrics.CROSS_ENTROPY])
            totals += window_totals
            samples += window_samples
            window = metrics.RunningSums(top_k)
            tic = time.time()
        bar.update(batch.data[0].shape[0])
    bar.close()
    if samples == 0:
        raise data_iter.DataFileError("the training iterator ended before the first batch")
    mx.nd.waitall()
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


def start_point(args, logger):
    """Where this run starts: with ``--resume`` the run folder's last epoch if it is later
    than ``--load-epoch`` (or that is not given), else ``--load-epoch``, else another
    run's weights (``--from-run``), else fresh (``--pretrained`` or random).

    A resumed run continues with the checkpoint's optimizer state (moments, update
    counts, and with them the optimizer's weight decay and momentum; the learning rate
    follows this run's schedule), unless the optimizer or ``--dtype`` changed: then it
    starts a fresh optimizer state, as the reference did when it switched optimizers.

    A checkpoint that ``--resume`` finds damaged (a truncated ``.params`` or ``.states``)
    is skipped, with a warning naming the file, for the last complete epoch that loads.
    """
    if args.resume:
        later = [epoch for epoch in checkpoint.complete_epochs(args.model_dir) if epoch > (args.load_epoch or 0)]
        for epoch in reversed(later):
            try:
                return _resume_point(args, epoch, logger)
            except checkpoint.DamagedCheckpointError as err:
                logger.warning("%s; resuming from the epoch before", err)
        if args.load_epoch is None:
            logger.info("no %scheckpoint in %s: starting afresh", "loadable " if later else "", args.model_dir)
    if args.load_epoch is not None:
        return _resume_point(args, args.load_epoch, logger)
    if args.from_run:
        run_dir, parent_epoch = checkpoint.resolve_checkpoint(args.from_run)
        checkpoint.check_loadable(run_dir, parent_epoch, states=False)
        return StartPoint(0, checkpoint.epoch_prefix(run_dir, parent_epoch) + ".params",
                          parent_meta=checkpoint.load_meta(run_dir, parent_epoch))
    if args.pretrained and not os.path.isfile(args.pretrained):
        raise checkpoint.CheckpointError("ImageNet weights %s not found: put the published file there, or leave "
                                         "--pretrained out to train from random initialisation" % args.pretrained)
    return StartPoint()


def _resume_point(args, epoch, logger):
    if epoch == 0:
        raise checkpoint.CheckpointError("--load-epoch counts completed epochs; epoch 0 has no checkpoint")
    run_dir, epoch = checkpoint.resolve_checkpoint(args.model_dir, epoch)
    meta = checkpoint.load_meta(run_dir, epoch)
    if (meta["model"], meta["classes"]) != (args.network, args.num_classes):
        raise checkpoint.CheckpointError(
            "%s holds a %s with %d classes; this run is a %s with %d: use --from-run to start a different "
            "network from it" % (run_dir, meta["model"], meta["classes"], args.network, args.num_classes))
    prefix = checkpoint.epoch_prefix(run_dir, epoch)
    saved = meta["args"]
    fresh_optimizer = (saved["optimizer"], saved["dtype"]) != (args.optimizer, args.dtype)
    checkpoint.check_loadable(run_dir, epoch, states=not fresh_optimizer)
    changed = changed_options(saved, args)
    if changed:
        logger.warning("resuming after epoch %d of %s with options changed since: %s", epoch, run_dir,
                       ", ".join("%s %s -> %s" % change for change in changed))
    if fresh_optimizer:
        logger.info("optimizer %s/%s differs from the checkpoint's %s/%s: fresh optimizer state",
                    args.optimizer, args.dtype, saved["optimizer"], saved["dtype"])
        return StartPoint(epoch, prefix + ".params")
    kept = [name for name, _, _ in changed if name in ("wd", "mom", "wd_sgd_only")]
    if kept:
        logger.warning("resuming keeps the checkpoint's optimizer settings %s",
                       ", ".join("%s=%s" % (name, saved.get(name)) for name in kept))
    return StartPoint(epoch, prefix + ".params", prefix + ".states")


# Options that do not change what a run learns: a resume may change them without a warning.
BOOKKEEPING_OPTIONS = frozenset({"model_dir", "resume", "load_epoch", "from_run", "num_epochs", "disp_batches",
                                 "top_k", "progress", "debug", "data_nthreads"})


def changed_options(saved, args):
    """[(name, checkpoint's value, this run's value)] of the options other than
    `BOOKKEEPING_OPTIONS` that differ from the checkpoint's arguments `saved`."""
    now = json.loads(json.dumps(vars(args)))       # as saved: tuples become lists
    return [(name, saved[name], now[name]) for name in sorted(now)
            if name in saved and name not in BOOKKEEPING_OPTIONS and saved[name] != now[name]]


def prepare_network(args, contexts, start, logger):
    """The network on `contexts`, with the weights `start` and ``--pretrained`` ask for.

    From another run of the same network and class count every parameter is loaded.
    From another network (SE-ResNeXt from ResNeXt) the shared backbone layers are copied
    (``models.get_model(from_model=...)``, new layers keep their initialisation), and the
    parent's classifier too when the class counts agree (as the reference's M11 and M13).
    """
    parent = start.parent_meta
    pretrained = args.pretrained if start.params is None else None
    if parent is not None and parent["model"] != args.network:
        net = models.get_model(args.network, classes=args.num_classes, dropout=args.dropout, ctx=contexts,
                               from_model=start.params)
        if parent["classes"] == args.num_classes:
            saved = mx.nd.load(start.params)
            for name, param in structural_names(net.output).items():
                param.set_data(saved["output." + name].astype(param.dtype, copy=False))
            logger.info("copied the classifier of %s", start.params)
    else:
        net = models.get_model(args.network, classes=args.num_classes, pretrained=pretrained, dropout=args.dropout,
                               ctx=contexts)
        if start.params is not None:
            if parent is not None and parent["classes"] != args.num_classes:
                models.load_backbone(net, start.params, model=args.network)
            else:
                net.load_parameters(start.params, ctx=contexts, cast_dtype=True, dtype_source="current")
    if start.params is not None:
        logger.info("initialised from %s", start.params)
    elif pretrained:
        logger.info("initialised from ImageNet weights %s", pretrained)
    if args.dtype != "float32":
        net.cast(args.dtype)
    return net


def create_trainer(net, args, kvstore):
    """A Gluon Trainer over `kvstore` (see ``train.devices`` for where the optimizer runs)."""
    params = net.collect_params()
    optim.apply_weight_decay_convention(params)
    optimizer = optim.create_optimizer(args.optimizer, args.lr, wd=args.wd, momentum=args.mom,
                                       multi_precision=args.dtype != "float32", wd_sgd_only=args.wd_sgd_only)
    return gluon.Trainer(params, optimizer, kvstore=kvstore,
                         update_on_kvstore=False if devices.is_distributed(kvstore) else None)


def restore_default_layout(net):
    """Give the parameters on CPUs MXNet's default memory layout again.

    After a forward pass in inference mode (``models.get_model`` runs one to resolve
    shapes, validation runs many) MKL-DNN keeps weights in its own blocked layout. A
    distributed kvstore pushes the raw memory of the weights when it initialises its keys
    and fails on such arrays: the server then aborts with "init N first" (on a busy
    2-core machine in 7 of 8 runs of a Trainer started right after models.get_model).
    A copy through numpy restores the default layout. It waits for the engine first:
    reading MKL-DNN weights while an operation still reads them (here the shape-resolving
    forward pass) races in MXNet 1.9.1 and can crash the process.
    """
    mx.nd.waitall()
    for param in net.collect_params().values():
        if param.list_ctx()[0].device_type == "cpu":
            param.set_data(mx.nd.array(param.data().asnumpy(), dtype=param.dtype))


def build_training(net, args, contexts, kvstore, start, logger, num_workers=1):
    """The `TrainStep` of a run around `net` (trainer, loss, trainable parameters), with
    the optimizer state `start` names; not yet hybridized (``set_frozen`` does it)."""
    restore_default_layout(net)
    trainer = create_trainer(net, args, kvstore)
    if start.states is not None:
        trainer.load_states(start.states)
        logger.info("resuming after epoch %d with the optimizer state of %s", start.epoch, start.states)
    loss = LabelSmoothingCrossEntropy(args.num_classes, args.label_smoothing)
    loss.hybridize(static_alloc=True)
    return TrainStep(net, loss, trainer, contexts, Trainability(net, args.grad_accum, args.freeze_keep),
                     args.grad_accum, args.dtype, num_workers)


@dataclasses.dataclass(frozen=True)
class RunData:
    """The checked inputs of a run and how it reads them."""

    spec: models.ModelSpec
    image_shape: tuple
    train: data_iter.RecordFile
    val: data_iter.RecordFile          # None: no validation
    val_headers: data_iter.RecordHeaders  # None unless this process validates
    num_batches: int                   # per epoch and worker
    augmentation: data_iter.Augmentation

    def train_batches(self, args, epoch, rank=0, num_workers=1):
        """Epoch `epoch`'s batches of this worker's shard, in an order fixed by (seed, epoch, rank)."""
        seed = data_iter.train_epoch_seed(args.seed, epoch) + rank
        return data_iter.located_errors(self.train, functools.partial(
            data_iter.image_iter, self.train, args.batch_size, self.image_shape, self.spec.mean, self.spec.scale,
            shuffle=True, seed=seed, augmentation=self.augmentation, num_parts=num_workers, part_index=rank,
            threads=args.data_nthreads))

    def val_batches(self, args):
        return data_iter.located_errors(self.val, functools.partial(
            data_iter.image_iter, self.val, args.batch_size, self.image_shape, self.spec.mean, self.spec.scale,
            threads=args.data_nthreads))


def prepare_data(args, validates, num_workers, logger):
    """Open and check the data files of a run before the first batch: they exist, match their
    index, and every class id fits ``--num-classes`` (``data_iter.check_labels``)."""
    spec = models.get_spec(args.network, normalization=args.normalization)
    train = data_iter.open_record_file(args.data_train, "training")
    data_iter.check_labels(train, args.num_classes)
    val = data_iter.open_record_file(args.data_val, "validation") if args.data_val else None
    val_headers = data_iter.read_record_headers(val) if val is not None and validates else None
    if val_headers is not None:
        data_iter.check_labels(val, args.num_classes, val_headers)
        logger.info("validation: %d images of %d products, %d of the %d classes", len(val_headers.labels),
                    len(np.unique(val_headers.product_ids)), len(np.unique(val_headers.labels)), args.num_classes)
    augmentation = data_iter.Augmentation(
        random_mirror=bool(args.random_mirror), random_crop=bool(args.random_crop),
        min_scale=args.min_random_scale, max_scale=args.max_random_scale, random_h=args.max_random_h,
        random_s=args.max_random_s, random_l=args.max_random_l, resize=args.resize)
    num_batches = data_iter.batches_per_epoch(train.num_records, args.batch_size, num_workers, args.epoch_size,
                                              args.grad_accum)
    return RunData(spec, args.image_shape or (3, spec.input_size, spec.input_size), train, val, val_headers,
                   num_batches, augmentation)


def write_metrics_history(run_dir, epoch):
    """Rewrite ``metrics.jsonl`` from the checkpoint JSONs of epochs 1..`epoch`; return its records.

    The checkpoints are the record of truth: a run killed between its checkpoint and this
    file, or resumed from an earlier epoch, still gets one line per epoch, and never lines
    of epochs it is about to redo.
    """
    records = []
    for done in range(1, epoch + 1):
        if os.path.exists(checkpoint.epoch_prefix(run_dir, done) + ".json"):
            records.append(checkpoint.load_meta(run_dir, done)["history"])
    with atomic_open(os.path.join(run_dir, "metrics.jsonl"), "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    return records


def save_epoch(args, data, step, record, num_workers, logger):
    """Checkpoint of the epoch in `record`, then ``metrics.jsonl`` and ``curves.png``."""
    meta = {"model": args.network, "classes": args.num_classes, "args": vars(args),
            "metrics": {"train": record["train"], "val": record["val"]}, "history": record,
            "mean": list(data.spec.mean), "scale": data.spec.scale, "normalization": data.spec.normalization,
            "dropout": args.dropout, "image_shape": list(data.image_shape), "dtype": args.dtype,
            "num_workers": num_workers}
    params_path = checkpoint.save_checkpoint(args.model_dir, record["epoch"], step.net, step.trainer, meta)
    logger.info(logs.checkpoint_line(params_path))
    history = write_metrics_history(args.model_dir, record["epoch"])
    plot_curves(history, os.path.join(args.model_dir, "curves.png"), title=args.model_dir)


def _log_arguments(logger, args, start):
    """The argument dump; ``load_epoch`` says where the run really starts (also with --resume)."""
    logger.info("arguments:")
    for line in logs.argument_lines(dict(vars(args), load_epoch=start.epoch)):
        logger.info(line)


def _devices(args):
    contexts = devices.training_contexts(args.gpus, args.cpu_devices)
    if args.dtype == "float16" and contexts[0].device_type != "gpu":
        raise devices.DeviceError("--dtype float16 needs GPUs (--gpus); CPUs train in float32")
    if args.batch_size % len(contexts):
        raise devices.DeviceError("--batch-size %d does not split evenly over %d devices"
                                  % (args.batch_size, len(contexts)))
    kvstore = devices.create_kvstore(args.kv_store, contexts)
    return contexts, kvstore


def run(args):
    """Train as the arguments say; returns this process's per-epoch records.

    Worker 0 (the only worker unless distributed) validates, writes the run
    folder and logs to ``train.log``; other workers only train and log to the console.
    """
    contexts, kvstore = _devices(args)
    rank, num_workers = devices.worker_position(kvstore)
    # One writer per run folder: the chief holds its lock for the whole run (a second run
    # into it fails at once) and first removes what a run killed while saving left there.
    with exclusive_output(args.model_dir) if rank == 0 else contextlib.nullcontext():
        return _run(args, contexts, kvstore, rank, num_workers)


def _run(args, contexts, kvstore, rank, num_workers):
    chief = rank == 0
    if chief:
        os.makedirs(args.model_dir, exist_ok=True)
    logger = logs.setup_logging(os.path.join(args.model_dir, "train.log") if chief else None)
    if num_workers > 1:
        logger.info("worker %d of %d", rank, num_workers)
    start = start_point(args, logger)
    _log_arguments(logger, args, start)
    if start.epoch >= args.num_epochs:
        logger.info("%s already holds epoch %d of --num-epochs %d: nothing to train", args.model_dir, start.epoch,
                    args.num_epochs)
        return []
    data = prepare_data(args, chief, num_workers, logger)
    logger.info("%d training images, %d batches of %d per epoch and worker, %d worker(s), %d device(s): %s",
                data.train.num_records, data.num_batches, args.batch_size, num_workers, len(contexts), contexts)
    mx.random.seed(args.seed)
    step = build_training(prepare_network(args, contexts, start, logger), args, contexts, kvstore, start, logger,
                          num_workers)

    def lr_at(progress):
        return optim.learning_rate_at(progress, args.lr, args.lr_step_epochs, args.lr_factor,
                                      args.warmup_epochs, args.warmup_begin_lr)

    records = []
    for epoch in range(start.epoch, args.num_epochs):
        if step.set_frozen(epoch < args.freeze_epochs):
            logger.info("Epoch[%d] %s", epoch, "training only the parameters matching %r" % args.freeze_keep
                        if step.trainability.frozen else "training all parameters")
        mx.random.seed(data_iter.train_epoch_seed(args.seed, epoch) + rank)
        result = train_epoch(step, data.train_batches(args, epoch, rank, num_workers), epoch, data.num_batches,
                             lr_at, logger, args.disp_batches, args.top_k, progress=args.progress)
        for line in logs.epoch_lines(epoch, "Train", {k: v for k, v in result.metrics.items() if k != metrics.LOSS}):
            logger.info(line)
        logger.info(logs.time_cost_line(epoch, result.seconds))
        if not chief:
            continue
        val_metrics = {}
        if data.val is not None:
            val_metrics = evaluate(step.net, data.val_batches(args), contexts, data.val_headers, args.top_k,
                                   args.dtype)
            for line in logs.epoch_lines(epoch, "Validation", val_metrics):
                logger.info(line)
        record = {"epoch": epoch + 1, "lr": result.lr, "time_cost": result.seconds,
                  "samples_per_sec": result.samples_per_sec, "train": dict(result.metrics), "val": dict(val_metrics)}
        save_epoch(args, data, step, record, num_workers, logger)
        records.append(record)
    return records
