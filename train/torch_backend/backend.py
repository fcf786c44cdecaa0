"""The PyTorch backend of the training driver (``train.backend.Backend``), for the GPUs MXNet
1.9.1 cannot run on (Hopper and newer), and on CPUs.

The networks are the timm twins of the Gluon ones (``models.torch_nets``); input comes
from the same indexed RecordIO files (``train.torch_backend.loader``); the driver (``train.fit``)
is the same, so are the log lines, ``metrics.jsonl``, ``curves.png`` and the run folder.

Devices: ``--devices gpu:N`` trains on ``cuda:N``, ``--devices cpu`` on the CPU; one device per
process, several through ``torchrun`` (DistributedDataParallel: NCCL on GPUs, gloo on
CPUs; each process reads its own shard, ``loader.epoch_order``). Every rank counts: the
training metrics of the log and ``metrics.jsonl`` (and the speed) are summed over the ranks
(`TorchBackend.take_window`), and each rank validates its share of the validation products
(`TorchBackend.evaluate`), so the figures are those of one process. ``--cpu-devices k``
splits each batch into k parts with batch norms of their own, as MXNet's k CPU contexts
do, so one process can stand for k workers (the tests compare them). On GPUs:
channels_last, cuDNN autotuning, ``--dtype bfloat16`` (autocast) or ``float16`` (autocast
and loss scaling), ``--compile`` (``torch.compile``), ``--decode-on device`` (JPEGs decoded in batches by
nvJPEG on the GPU: ``train.torch_backend.loader``).

Several machines: the same command under ``torchrun`` on each, e.g. for 2 machines of 8 GPUs::

    torchrun --nnodes 2 --node-rank R --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint FIRST_HOST:29500 train/train.py --backend torch --devices gpu:0,...,gpu:7 ...

(``R`` = 0 on the first machine, 1 on the other; the run folder is written by rank 0 and
should be on storage both can reach for ``--resume``.)

Checkpoint files: for a network with a Gluon twin, ``epoch-NNNN.params`` holds the weights
in Gluon's format and names (``models.weight_convert.torch_to_gluon``, written with
``models.params_file``, no MXNet), so the predictor, ``--from-run`` and the ensemble read a
PyTorch run as they read a Gluon one, on either framework; for one that exists on PyTorch
only (``timm/<name>``), ``epoch-NNNN.safetensors`` holds its state dict as it is
(docs/DESIGN.md, "Run folders of the PyTorch backend"). The JSON says ``framework: torch``
and ``weights_format``. ``epoch-NNNN.states`` is ``torch.save`` of the optimizer's state
dict, the loss scaler's, the batch-norm counters, which the Gluon format has no place for,
and the count of updates of the moving average: with all of them a resume is bit-exact on
the CPU.

Moving average of the weights (``--ema-decay``): timm's ``ModelEmaV3`` of the network,
updated after every optimizer step (its decay warmed up with ``--ema-warmup``), saved
beside the weights in their format (``epoch-NNNN.ema.params`` / ``.ema.safetensors``),
validated instead of the trained weights with ``--ema-eval``.

Optimizers: ``torch.optim``'s NAdam (the same momentum schedule as ``train.mxnet_backend.optim.NAdam``,
``momentum_decay`` 0.004) and Adam; SGD and NAG as MXNet computes them, the learning rate
inside the momentum (``train.torch_backend.optim``); L2 weight decay on weights and
batch-norm gammas only (`decays`), and none for Adam/NAdam with ``--wd-sgd-only``, as in
the Gluon path. AdamW (``torch.optim.AdamW``) decays, decoupled, the layers' weights only,
not norms, biases nor what the network names in ``no_weight_decay()`` (timm's
``param_groups_weight_decay``). Fresh layers (a new classifier, the squeeze-excitations of an
SE-ResNeXt started from a ResNeXt) start as Gluon's (``models.torch_nets.initialise``).

Freezing: ``--freeze-keep`` is a regex over the Gluon structural names (``^output\\.``);
a PyTorch parameter stays trainable while frozen when its Gluon name matches
(``models.weight_convert.parameter_pairs``), so one pattern means the same layers for both.
The batch norms that no gradient reaches keep their statistics while frozen, as MXNet's do
(``train.torch_backend.frozen_batchnorm``). A network without a Gluon twin is matched by its
PyTorch names, its classifier's called ``output.`` as in the Gluon networks (`pattern_names`),
so the default pattern keeps the classifier.
"""
import atexit
import contextlib
import os
import random
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from timm.optim import param_groups_weight_decay
from timm.utils import ModelEmaV3

from data.atomic import atomic_path
from data.parallel import die_with_current_parent
from data.products import ProductAccuracy, accuracy, product_ranges
from data.record_file import DataFileError
from models import params_file, runs
from models.families import ArchitectureError, architecture, config_overrides, family_of
from models.torch_nets.build import UnsupportedArchitectureError, create_torch_model
from models.torch_nets.convert_weights import TORCH_SUFFIXES
from models.torch_nets.devices import share_cpu_threads, torch_device, unavailable_gpu
from models.torch_nets.images import normalise
from models.torch_nets.weights import (DAMAGED_FILE_ERRORS, classifier_prefix, gluon_weights_to_state,
                                       load_imagenet_backbone, read_run_file, run_state, write_run_state)
from models.weight_convert import BN_COUNTER, WeightConversionError, parameter_pairs
from train import metrics
from train.backend import Backend
from train.config import ADAPTIVE_OPTIMIZERS
from train.inputs import epoch_order, train_epoch_seed
from train.torch_backend import frozen_batchnorm, loader
from train.torch_backend.optim import MXNetMomentum, is_torch_sgd_state

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class TorchDeviceError(RuntimeError):
    """Devices or a distributed launch this machine or this PyTorch cannot provide."""


class FreezePatternError(ValueError):
    """``--freeze-keep`` keeps no parameter of the network trainable."""


def training_device(gpus, dtype):
    """The device of this process: ``cuda:N`` for GPU numbers `gpus` ``"N"`` (``--devices
    gpu:N``; under ``torchrun`` the ``LOCAL_RANK``-th GPU listed), else the CPU."""
    listed = [int(g) for g in str(gpus or "").split(",") if g.strip()]
    if not listed:
        if dtype != "float32":
            raise TorchDeviceError("--dtype %s needs a GPU (--devices gpu:N); CPUs train in float32" % dtype)
        return torch_device("cpu")
    unavailable = unavailable_gpu(gpus)
    if unavailable:
        raise TorchDeviceError(unavailable)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if "LOCAL_RANK" not in os.environ and len(listed) > 1:
        raise TorchDeviceError("--backend torch trains on one GPU per process: start %d processes with torchrun "
                               "--nproc-per-node %d (each takes the LOCAL_RANK-th of GPUs %s)"
                               % (len(listed), len(listed), gpus))
    if local_rank >= len(listed):
        raise TorchDeviceError("process LOCAL_RANK %d has no GPU among GPUs %s" % (local_rank, gpus))
    return torch_device("gpu:%d" % listed[local_rank])


def follow_agent():
    """A process that torchrun's agent started (``TORCHELASTIC_RUN_ID``) dies with it (SIGKILL,
    ``data.parallel.die_with_current_parent``): torchrun stops its workers when it is stopped
    (SIGTERM, SIGINT) but not when it is killed, and the workers of a dead agent would train on,
    holding the run folder. One whose agent is already gone (it was re-parented to init) exits."""
    if "TORCHELASTIC_RUN_ID" in os.environ and not die_with_current_parent():
        os._exit(1)


def join_process_group(device):
    """(rank, number of processes): of the ``torchrun`` job this process belongs to (joined
    here: NCCL on GPUs, gloo on CPUs), else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)    # else PyTorch warns of a leak at exit
    return dist.get_rank(), dist.get_world_size()


def smoothed_cross_entropy(logits, labels, smoothing, classes):
    """Per-sample cross-entropy against MXNet's ``smooth_alpha`` target (``train.mxnet_backend.step``):
    1 - smoothing on the true class, smoothing / (classes - 1) on each other one (PyTorch's
    ``label_smoothing`` gives the true class a share too). Computed in float32."""
    log_prob = F.log_softmax(logits.float(), dim=1)
    true_class = -log_prob.gather(1, labels[:, None])[:, 0]
    if smoothing == 0:
        return true_class
    other_classes = -log_prob.sum(dim=1) - true_class
    return (1.0 - smoothing) * true_class + smoothing / (classes - 1) * other_classes


def batch_sums(logits, labels, top_k, losses=None):
    """[correct, top-k correct, cross-entropy, loss] summed over a batch, on its device
    (the columns ``train.metrics.metrics_from_totals`` reads)."""
    logits = logits.float()
    k = min(top_k, logits.shape[1])
    correct = (logits.argmax(dim=1) == labels).sum()
    in_top_k = (logits.topk(k, dim=1).indices == labels[:, None]).sum()
    cross_entropy = -F.log_softmax(logits, dim=1).gather(1, labels[:, None]).sum()
    loss = losses.sum() if losses is not None else torch.zeros((), device=logits.device)
    return torch.stack([correct.float(), in_top_k.float(), cross_entropy, loss.float()]).double()


def load_start_weights(model, network, classes, start, pretrained, logger, config=None):
    """Load into `model` what ``train.fit.StartPoint`` `start` names: all of a run of the same
    network and class count; the entries of the same name and shape of another network's run
    (SE-ResNeXt from ResNeXt), its classifier only when the class counts agree; else the
    ImageNet weights `pretrained`: a timm/torchvision/Hugging Face file, a Gluon ``.params``
    in structural names, or the network's own through its library's loader (``--pretrained
    timm``: ``Family.default_weights``, the family builder's ``imagenet_state`` of the
    architecture `config`), the classifier left out."""
    parent = start.parent_meta
    if start.params is not None:
        source = parent["model"] if parent is not None else network
        state = run_state(start.params, start.weights_format, source)
        same_classes = parent is None or parent["classes"] == classes
        if source == network and same_classes:
            model.load_state_dict(state)
        else:
            own = model.state_dict()
            head = {k for k in own if k.startswith(classifier_prefix(model))}
            shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
                      and (same_classes or k not in head)}
            model.load_state_dict(shared, strict=False)
            if same_classes and head <= set(shared):
                logger.info("copied the classifier of %s", start.params)
        logger.info("initialised from %s", start.params)
    elif pretrained:
        family = family_of(network)
        if pretrained == family.default_weights:
            load_imagenet_backbone(model, family.builder("torch").imagenet_state(config, classes))
            logger.info("initialised from %s's ImageNet weights through timm's loader", network)
            return
        try:
            weights = pretrained if pretrained.endswith(TORCH_SUFFIXES) else gluon_weights_to_state(pretrained,
                                                                                                  network)
        except (WeightConversionError, ArchitectureError) as err:
            raise WeightConversionError(
                "%s: %s. --backend torch takes ImageNet weights as timm's or torchvision's files (%s; e.g. "
                "dpn92.mx_in1k, resnext101_64x4d.gluon_in1k, densenet161.tv_in1k: --pretrained FILE, PRETRAINED=FILE "
                "for the recipe scripts) or Gluon .params in the network's own names (a run's checkpoint, "
                "python -m models.torch_nets.convert_weights); the reference's published MXNet checkpoints load with "
                "--backend mxnet" % (pretrained, err, "/".join(TORCH_SUFFIXES))) from None
        load_imagenet_backbone(model, weights)
        logger.info("initialised from ImageNet weights %s", pretrained)


def decays(name):
    """Whether weight decay applies to the parameter `name`: weights and batch-norm gammas,
    which PyTorch both names ``weight`` (the convention of ``train.mxnet_backend.optim.decays``, which
    this module cannot import: it loads MXNet)."""
    return name.endswith("weight")


def parameter_groups(model, settings):
    """The optimizer's parameter groups of `model` with weight decay where it applies: on the
    weights and gammas (`decays`) with the reference's optimizers, none for Adam/NAdam with
    ``--wd-sgd-only``; on the layers' weights only with AdamW (timm's rule)."""
    if settings.optimizer == "adamw":
        skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
        return param_groups_weight_decay(model, settings.wd, skip)
    wd = 0.0 if settings.wd_sgd_only and settings.optimizer in ADAPTIVE_OPTIMIZERS else settings.wd
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if decays(n)], "weight_decay": wd},
            {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}]


def create_optimizer(model, settings):
    """The optimizer of ``train.config.OptimizerConfig`` `settings` over `model`'s parameters
    (`parameter_groups`)."""
    groups = parameter_groups(model, settings)
    if settings.optimizer == "nadam":
        return torch.optim.NAdam(groups, lr=settings.lr, momentum_decay=0.004)
    if settings.optimizer == "adam":
        return torch.optim.Adam(groups, lr=settings.lr)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.lr)
    return MXNetMomentum(groups, lr=settings.lr, momentum=settings.mom, nesterov=settings.optimizer == "nag")


def pattern_names(network, model):
    """``{PyTorch parameter name: the name --freeze-keep matches}``: the Gluon structural
    name of a network with a Gluon twin; else its own, with the classifier's prefix
    written ``output.`` as in the Gluon networks."""
    if family_of(network).layers is not None:
        return {pair.torch: pair.gluon for pair in parameter_pairs(network) if pair.gluon is not None}
    head = classifier_prefix(model)
    return {n: "output." + n[len(head):] if n.startswith(head) else n for n, _ in model.named_parameters()}


def kept_while_frozen(network, model, pattern):
    """The names of `model`'s trainable parameters whose `pattern_names` match `pattern`
    (``--freeze-keep``)."""
    keep = re.compile(pattern)
    gluon_name = pattern_names(network, model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    kept = {n for n in trainable if keep.search(gluon_name.get(n, n))}
    if not kept:
        raise FreezePatternError("--freeze-keep %r matches no trainable parameter of the network (Gluon names like "
                                 "%s)" % (pattern, ", ".join(gluon_name[n] for n in trainable[-2:])))
    return kept


class TorchBackend(Backend):
    """`Backend` over PyTorch: one device per process, DistributedDataParallel across processes."""

    framework = "torch"
    shares_validation = True
    user_errors = (TorchDeviceError, FreezePatternError, WeightConversionError, params_file.ParamsFormatError,
                   UnsupportedArchitectureError)
    framework_errors = (torch.cuda.OutOfMemoryError,)

    @staticmethod
    def describe_error(error):
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return "PyTorch: " + (lines[0] if lines else type(error).__name__)

    @staticmethod
    def all_gpus():
        return ",".join(map(str, range(torch.cuda.device_count())))

    def __init__(self, config):
        follow_agent()
        self.config = config
        self.device = training_device(config.devices.gpus, config.network.dtype)
        self.devices = [str(self.device)] * config.devices.cpu_devices if self.device.type == "cpu" \
            else [str(self.device)]
        if config.optimizer.batch_size % len(self.devices):
            raise TorchDeviceError("--batch-size %d does not split evenly over %d devices"
                                   % (config.optimizer.batch_size, len(self.devices)))
        self.rank, self.num_workers = join_process_group(self.device)
        # The cores of this machine are shared by its training processes and their input workers.
        share_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", 1)) * (1 + config.data.data_nthreads))
        self.autocast = AUTOCAST_DTYPES.get(config.network.dtype)
        self.model = self.trained = self.optimizer = self.scaler = self.ema = None
        self.ema_updates = 0      # optimizer steps the moving average has followed (its warm-up's clock)
        self._spec = self._example = self._trainable = self._kept = self.frozen = None
        self._momenta = {}          # of the batch norms that keep their statistics while frozen
        self._pending = 0
        self._window = self._new_window()

    def _new_window(self):
        return [torch.zeros(4, dtype=torch.float64, device=self.device), 0]

    def check_loadable(self, run_dir, epoch, states=True):
        meta = runs.load_meta(run_dir, epoch)
        weights_format = runs.weights_format(meta)
        files = [runs.params_path(run_dir, epoch, weights_format)]
        if states and meta.get("ema_weights"):
            files.append(os.path.join(run_dir, meta["ema_weights"]))
        for path in files:
            try:
                read_run_file(path, weights_format)
            except DAMAGED_FILE_ERRORS as err:
                raise runs.DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                                  % (path, err)) from None
        if states and meta.get("framework", "mxnet") != self.framework:
            raise runs.CheckpointError("%s holds the optimizer state of a %s run; start from its weights with "
                                             "--from-run" % (runs.states_path(run_dir, epoch),
                                                             meta.get("framework", "mxnet")))
        if states:
            self._load_states(runs.states_path(run_dir, epoch))

    @staticmethod
    def _load_states(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:   # noqa: BLE001 -- torch.load raises whatever its unpickler meets
            raise runs.DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                                    % (path, str(err).splitlines()[0] if str(err) else err)) from None

    def seed(self, seed):
        torch.manual_seed(seed)
        np.random.seed(seed % 2 ** 32)
        random.seed(seed)

    def build(self, start, data, logger):
        network = self.config.network
        # The architecture of the run it resumes or starts from (a model-zoo ResNeXt's widths),
        # built for this run's input size (a ViT's position embeddings).
        config = family_of(network.network).sized(architecture(network.network, start.config_overrides)[1],
                                                  data.image_shape)
        self.config_overrides = config_overrides(network.network, config)
        model = create_torch_model(network.network, self.config.data.num_classes, dropout=network.dropout,
                                   config_overrides=self.config_overrides)
        load_start_weights(model, network.network, self.config.data.num_classes, start,
                           network.pretrained if start.params is None else None, logger, config)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            model = model.to(self.device, memory_format=torch.channels_last)
        self.model = model.train()
        self._spec = data.spec
        self._example = torch.zeros((1, *data.image_shape), device=self.device)
        # The fixed gammas of MXNet's ``fix_gamma`` batch norms are never trained.
        self._trainable = {name for name, param in model.named_parameters() if param.requires_grad}
        self._kept = kept_while_frozen(network.network, model, self.config.schedule.freeze_keep)
        self.optimizer = create_optimizer(model, self.config.optimizer)
        self.scaler = torch.amp.GradScaler("cuda", enabled=network.dtype == "float16")
        self.ema = self._moving_average(start, logger)
        if start.states is not None:
            saved = self._load_states(start.states)
            if is_torch_sgd_state(saved["optimizer"]):
                logger.warning("%s holds torch.optim.SGD's momentum (a PyTorch run of before MXNet's momentum rule): "
                               "converted to MXNet's at the learning rate of its last step", start.states)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scaler.load_state_dict(saved["scaler"])
            model.load_state_dict(saved["counters"], strict=False)
            self.ema_updates = saved.get("ema_updates", 0)
            logger.info("resuming after epoch %d with the optimizer state of %s", start.epoch, start.states)

    def _moving_average(self, start, logger):
        """timm's ``ModelEmaV3`` of the network (``--ema-decay``; None without), continuing
        the checkpoint's average when a resumed run has one (its update count comes with the
        optimizer state), else starting from the network's weights."""
        settings = self.config.ema
        if not settings.ema_decay:
            return None
        ema = ModelEmaV3(self.model, decay=settings.ema_decay, use_warmup=settings.ema_warmup)
        if start.ema is not None:
            # Gluon's format has no batch-norm counters: the average copies the network's at each update.
            ema.module.load_state_dict(run_state(start.ema, start.weights_format, self.config.network.network),
                                       strict=False)
            logger.info("continuing the moving average of the weights of %s", start.ema)
        return ema

    def set_frozen(self, frozen):
        """Also gives the batch norms that no gradient reaches while frozen momentum 0, and
        their momenta back when unfrozen (``frozen_batchnorm``), before the module the step
        calls is rebuilt (``torch.compile`` reads the momenta when it traces)."""
        if frozen == self.frozen:
            return False
        frozen_batchnorm.restore_momenta(self.model, self._momenta)
        self._momenta = {}
        if frozen:
            stale = frozen_batchnorm.stale_batchnorms(self.model, self._trainable - self._kept, self._example)
            self._momenta = frozen_batchnorm.keep_statistics(self.model, stale)
        for name, param in self.model.named_parameters():
            if name in self._trainable:
                param.requires_grad_(not frozen or name in self._kept)
        self.frozen = frozen
        self.trained = self._wrapped()
        return True

    def _wrapped(self):
        """The module the training step calls: the model, compiled (``--compile``) and wrapped
        for DistributedDataParallel; rebuilt when the set of trained parameters changes."""
        module = self.model
        if self.config.compute.compile:
            module = torch.compile(module)
        if self.num_workers > 1:
            module = DistributedDataParallel(module, device_ids=[self.device] if self.device.type == "cuda" else None)
        return module

    def train_batches(self, data, epoch):
        epoch_seed = train_epoch_seed(self.config.logging.seed, epoch)
        order = epoch_order(data.train.num_records, epoch_seed, self.config.optimizer.batch_size,
                                       self.rank, self.num_workers)
        return loader.batches(data.train, order, self.config.optimizer.batch_size, data.image_shape,
                              data.augmentation, epoch_seed, self.config.data.data_nthreads,
                              self.config.data.decode_on, self.device, num_classes=self.config.data.num_classes)

    def _input(self, pixels, spec):
        return normalise(pixels, spec.mean, spec.scale, self.device, self.device.type == "cuda")

    def train_step(self, batch, lr):
        pixels, labels = batch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        settings = self.config.optimizer
        x = self._input(pixels, self._spec)
        y = labels.to(self.device, non_blocking=True)
        self._pending += 1
        last = self._pending == settings.grad_accum
        parts = len(self.devices)
        for i, (xs, ys) in enumerate(zip(x.chunk(parts), y.chunk(parts))):
            sync = last and i == parts - 1
            with (self.trained.no_sync() if self.num_workers > 1 and not sync else contextlib.nullcontext()):
                with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                    logits = self.trained(xs)
                losses = smoothed_cross_entropy(logits, ys, settings.label_smoothing, self.config.data.num_classes)
                self.scaler.scale(losses.sum() / (x.shape[0] * settings.grad_accum)).backward()
            self._window[0] += batch_sums(logits.detach(), ys, self.config.logging.top_k, losses.detach())
        self._window[1] += x.shape[0]
        if last:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self._pending = 0
            if self.ema is not None:
                self.ema_updates += 1
                self.ema.update(self.model, step=self.ema_updates)
        return x.shape[0]

    def take_window(self):
        """The window's sums and sample count over every rank (one all-reduce of 5 numbers)."""
        (sums, samples), self._window = self._window, self._new_window()
        totals = self._summed(torch.cat([sums, sums.new_tensor([samples])])).cpu().numpy()
        return totals[:4], int(totals[4])

    def _summed(self, values):
        """`values` (a float64 tensor on the device) summed over the ranks of a distributed run."""
        if self.num_workers > 1:
            dist.all_reduce(values)
        return values

    def finish_epoch(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self, data):
        """Image and product metrics over the whole validation file, every rank taking part:
        each scores the records of its contiguous range of whole products (``data.products.
        product_ranges``), in file order, with the model itself (not its distributed wrapper)
        or the moving average of its weights (``--ema-eval``), whose batch-norm statistics are
        first made rank 0's on every rank; the counts and sums are then added over the ranks,
        so the product accuracy is the one-process figure exactly, in a share of the time
        (rank 0 alone kept the others waiting in the next collective, at the risk of its
        timeout)."""
        headers, top_k = data.val_headers, self.config.logging.top_k
        start, stop = product_ranges(headers.product_ids, self.num_workers)[self.rank]
        sums, products, position = torch.zeros(4, dtype=torch.float64, device=self.device), ProductAccuracy(), start
        order = np.arange(start, stop)
        model = self.ema.module if self.config.ema.ema_eval else self.model
        if self.num_workers > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)
        model.eval()
        with torch.no_grad():
            for pixels, labels in loader.batches(data.val, order, self.config.optimizer.batch_size,
                                                     data.image_shape, workers=self.config.data.data_nthreads,
                                                     decode_on=self.config.data.decode_on, device=self.device,
                                                     drop_last=False, num_classes=self.config.data.num_classes):
                with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                    logits = model(self._input(pixels, data.spec)).float()
                size = len(labels)
                expected = headers.labels[position:position + size]
                if not np.array_equal(labels.numpy().astype(np.int64), expected):
                    raise DataFileError(
                        "validation labels at records %d..%d differ from the file's headers"
                        % (position, position + size - 1))
                sums += batch_sums(logits, labels.to(self.device), top_k)
                products.update(F.softmax(logits, dim=1).cpu().numpy(), headers.product_ids[position:position + size],
                                expected)
                position += size
        self.model.train()
        products.result()
        counts = sums.new_tensor([position - start, products.correct, products.products])
        totals = self._summed(torch.cat([sums, counts])).cpu().numpy()
        values = metrics.metrics_from_totals(totals[:4], int(totals[4]), top_k)
        values[metrics.PRODUCT_ACCURACY] = accuracy(int(totals[5]), int(totals[6]))
        return values

    def save(self, run_dir, epoch, meta):
        weights_format, network = runs.weights_format(meta), self.config.network.network
        params = runs.params_path(run_dir, epoch, weights_format)
        with atomic_path(params) as tmp:
            write_run_state(tmp, weights_format, network, self.model.state_dict())
        if self.ema is not None:
            with atomic_path(os.path.join(run_dir, meta["ema_weights"])) as tmp:
                write_run_state(tmp, weights_format, network, self.ema.module.state_dict())
        counters = {name: tensor for name, tensor in self.model.state_dict().items() if name.endswith(BN_COUNTER)}
        with atomic_path(runs.states_path(run_dir, epoch)) as tmp:
            torch.save({"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                        "counters": counters, "ema_updates": self.ema_updates}, tmp)
        runs.write_epoch_meta(run_dir, epoch, meta)
        return params


BACKEND = TorchBackend
