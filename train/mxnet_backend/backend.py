"""The MXNet Gluon backend of the training driver (``train.backend.Backend``).

Data-parallel Gluon training: devices and kvstores (`devices`), the network and its
starting weights (here, ``models.mxnet_nets``), the optimizer (`optim`), the training step
(`step`), ``ImageRecordIter`` input (`record_iter`), validation (`evaluate`) and the checkpoint's
``.params``/``.states`` files (`checkpoint`); several machines through `launch`.
"""
import functools

import mxnet as mx
from mxnet import gluon

from models import mxnet_nets
from models.mxnet_nets.runs import mxnet_message
from models.mxnet_nets.weights import structural_names
from train.backend import Backend
from train.inputs import train_epoch_seed
from train.mxnet_backend import checkpoint, devices, metrics, optim, record_iter
from train.mxnet_backend.evaluate import evaluate
from train.mxnet_backend.step import FreezePatternError, LabelSmoothingCrossEntropy, Trainability, TrainStep


def prepare_network(config, contexts, start, logger):
    """The network on `contexts`, with the weights `start` and ``pretrained`` ask for.

    From another run of the same network and class count every parameter is loaded.
    From another network (SE-ResNeXt from ResNeXt) the shared backbone layers are copied
    (``models.mxnet_nets.get_model(from_model=...)``, new layers keep their initialisation), and the
    parent's classifier too when the class counts agree (as the reference's M11 and M13).
    """
    network, classes = config.network, config.data.num_classes
    parent = start.parent_meta
    pretrained = network.pretrained if start.params is None else None
    if parent is not None and parent["model"] != network.network:
        net = mxnet_nets.get_model(network.network, classes=classes, dropout=network.dropout, ctx=contexts,
                                   from_model=start.params)
        if parent["classes"] == classes:
            saved = mx.nd.load(start.params)
            for name, param in structural_names(net.output).items():
                param.set_data(saved["output." + name].astype(param.dtype, copy=False))
            logger.info("copied the classifier of %s", start.params)
    else:
        net = mxnet_nets.get_model(network.network, classes=classes, pretrained=pretrained, dropout=network.dropout,
                                   ctx=contexts, config_overrides=start.config_overrides)
        if start.params is not None:
            if parent is not None and parent["classes"] != classes:
                mxnet_nets.load_backbone(net, start.params, model=network.network)
            else:
                net.load_parameters(start.params, ctx=contexts, cast_dtype=True, dtype_source="current")
    if start.params is not None:
        logger.info("initialised from %s", start.params)
    elif pretrained:
        logger.info("initialised from ImageNet weights %s", pretrained)
    if network.dtype != "float32":
        net.cast(network.dtype)
    return net


def create_trainer(net, config, kvstore):
    """A Gluon Trainer over `kvstore` (see `devices` for where the optimizer runs)."""
    params = net.collect_params()
    optim.apply_weight_decay_convention(params)
    settings = config.optimizer
    optimizer = optim.create_optimizer(settings.optimizer, settings.lr, wd=settings.wd, momentum=settings.mom,
                                       multi_precision=config.network.dtype != "float32",
                                       wd_sgd_only=settings.wd_sgd_only)
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


def build_training(net, config, contexts, kvstore, start, logger, num_workers=1):
    """The `TrainStep` of a run around `net` (trainer, loss, trainable parameters), with
    the optimizer state `start` names; not yet hybridized (``set_frozen`` does it)."""
    restore_default_layout(net)
    trainer = create_trainer(net, config, kvstore)
    if start.states is not None:
        trainer.load_states(start.states)
        logger.info("resuming after epoch %d with the optimizer state of %s", start.epoch, start.states)
    loss = LabelSmoothingCrossEntropy(config.data.num_classes, config.optimizer.label_smoothing)
    loss.hybridize(static_alloc=True)
    grad_accum = config.optimizer.grad_accum
    return TrainStep(net, loss, trainer, contexts, Trainability(net, grad_accum, config.schedule.freeze_keep),
                     grad_accum, config.network.dtype, num_workers)


def training_devices(config):
    """(contexts, kvstore) of the run, checked against its dtype and batch size."""
    contexts = devices.training_contexts(config.devices.gpus, config.devices.cpu_devices)
    batch_size = config.optimizer.batch_size
    if config.network.dtype == "float16" and contexts[0].device_type != "gpu":
        raise devices.DeviceError("--dtype float16 needs GPUs (--gpus); CPUs train in float32")
    if batch_size % len(contexts):
        raise devices.DeviceError("--batch-size %d does not split evenly over %d devices"
                                  % (batch_size, len(contexts)))
    return contexts, devices.create_kvstore(config.devices.kv_store, contexts)


class MXNetBackend(Backend):
    """`Backend` over Gluon: a `TrainStep` on the configured devices and kvstore."""

    framework = "mxnet"
    user_errors = (devices.DeviceError, FreezePatternError, mxnet_nets.WeightImportError)
    framework_errors = (mx.base.MXNetError,)
    all_gpus = staticmethod(devices.all_gpus)

    @staticmethod
    def describe_error(error):
        return "MXNet: " + mxnet_message(error)   # its text opens with "Traceback (most recent call last):"

    def __init__(self, config):
        self.config = config
        self.devices, self.kvstore = training_devices(config)
        self.rank, self.num_workers = devices.worker_position(self.kvstore)
        self.step = None
        self._window = metrics.RunningSums(config.logging.top_k)

    def check_loadable(self, run_dir, epoch, states=True):
        checkpoint.check_loadable(run_dir, epoch, states)

    def seed(self, seed):
        mx.random.seed(seed)

    def build(self, start, run_data, logger):
        net = prepare_network(self.config, self.devices, start, logger)
        self.config_overrides = net.config_overrides
        self.step = build_training(net, self.config, self.devices, self.kvstore, start, logger, self.num_workers)

    def set_frozen(self, frozen):
        return self.step.set_frozen(frozen)

    def _batches(self, run_data, record, **kwargs):
        return record_iter.located_errors(record, functools.partial(
            record_iter.image_iter, record, self.config.optimizer.batch_size, run_data.image_shape, run_data.spec.mean,
            run_data.spec.scale, threads=self.config.data.data_nthreads, **kwargs))

    def train_batches(self, run_data, epoch):
        seed = train_epoch_seed(self.config.logging.seed, epoch) + self.rank
        return self._batches(run_data, run_data.train, shuffle=True, seed=seed, augmentation=run_data.augmentation,
                             num_parts=self.num_workers, part_index=self.rank)

    def train_step(self, batch, lr):
        self.step.trainer.set_learning_rate(lr)
        self.step(batch.data[0], batch.label[0], self._window)
        return batch.data[0].shape[0]

    def take_window(self):
        window, self._window = self._window, metrics.RunningSums(self.config.logging.top_k)
        return window.totals(), window.samples

    def finish_epoch(self):
        mx.nd.waitall()

    def evaluate(self, run_data):
        return evaluate(self.step.net, self._batches(run_data, run_data.val), self.devices, run_data.val_headers,
                        self.config.logging.top_k, self.config.network.dtype)

    def save(self, run_dir, epoch, meta):
        return checkpoint.save_checkpoint(run_dir, epoch, self.step.net, self.step.trainer, meta)


BACKEND = MXNetBackend
