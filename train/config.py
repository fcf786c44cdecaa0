"""The training configuration: typed and frozen, built once from the command line.

``train.args`` parses the command line; `TrainConfig.from_args` turns its namespace into
this configuration, grouped as the argument groups are, and nothing after that sees
argparse. A checkpoint stores `TrainConfig.flat` (one entry per field, by field name)
as its ``args``, and a resume compares configurations field by field
(`changed_options`). Fields are named for what they mean and a flag reaches its field
through argparse's ``dest``: a renamed flag keeps its field, so checkpoints written
before the rename (and today's runs, whose ``args`` were argparse's names, the same as
these fields) still resume. Importing this module loads no framework.
"""
import dataclasses
import json

from models.backends import WORKER_DECODE

OPTIMIZERS = ("nadam", "adam", "sgd", "nag", "adamw")
# The optimizers the reference ran without weight decay (``--wd-sgd-only``); AdamW's
# decoupled weight decay is the point of it, and always applies.
ADAPTIVE_OPTIMIZERS = ("nadam", "adam")
LR_SCHEDULES = ("step", "cosine")
LOCAL_KVSTORES = ("device", "local", "nccl")
DIST_KVSTORES = ("dist_sync", "dist_device_sync")
KVSTORES = LOCAL_KVSTORES + DIST_KVSTORES

@dataclasses.dataclass(frozen=True)
class DataConfig:
    data_train: str
    data_val: str               # "": no validation
    num_classes: int
    image_shape: tuple          # (3, H, W), or None: the model's input size
    data_nthreads: int
    epoch_size: int             # images per epoch; 0: one full pass
    decode_on: str = WORKER_DECODE  # models.backends: where; checkpoints written before the option decoded in workers


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    random_mirror: int
    random_crop: int
    min_random_scale: float
    max_random_scale: float
    max_random_h: int
    max_random_s: int
    max_random_l: int
    resize: int


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    network: str
    pretrained: str             # None: random initialisation
    dropout: float
    normalization: str
    dtype: str


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    optimizer: str
    lr: float
    mom: float
    wd: float
    wd_sgd_only: bool
    label_smoothing: float
    batch_size: int
    grad_accum: int


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    num_epochs: int
    lr_schedule: str            # step (the reference's) or cosine
    lr_step_epochs: tuple
    lr_factor: float
    cosine_epochs: float        # where the cosine schedule reaches min_lr
    min_lr: float
    warmup_epochs: float
    warmup_begin_lr: float
    freeze_epochs: int
    freeze_keep: str


@dataclasses.dataclass(frozen=True)
class EmaConfig:
    ema_decay: float            # 0: no moving average of the weights
    ema_warmup: bool            # timm's decay warm-up (ModelEmaV3 use_warmup)
    ema_eval: bool              # validate the moving average instead of the trained weights


@dataclasses.dataclass(frozen=True)
class DeviceConfig:
    gpus: str                   # "0,1,..."; "": CPU contexts
    cpu_devices: int
    kv_store: str


@dataclasses.dataclass(frozen=True)
class ComputeConfig:
    backend: str                # a name of the registry models.backends
    compile: bool               # torch.compile the network (PyTorch only)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    model_dir: str
    resume: bool
    load_epoch: int
    from_run: str


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    disp_batches: int
    top_k: int
    seed: int
    debug: bool
    progress: bool


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is told, by group."""

    data: DataConfig
    augmentation: AugmentationConfig
    network: NetworkConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    ema: EmaConfig
    devices: DeviceConfig
    compute: ComputeConfig
    checkpoint: CheckpointConfig
    logging: LoggingConfig

    @classmethod
    def from_args(cls, args):
        """The configuration of an argparse namespace that holds every field (``train.args``)."""
        return cls(**{group.name: group.type(**{field.name: _frozen(getattr(args, field.name))
                                                for field in dataclasses.fields(group.type)})
                      for group in dataclasses.fields(cls)})

    def fields(self):
        """{field name: value} over all groups, in the order of the command line's help."""
        return {name: value for group in dataclasses.fields(self)
                for name, value in dataclasses.asdict(getattr(self, group.name)).items()}

    def flat(self):
        """`fields` as JSON stores them (tuples become lists)."""
        return json.loads(json.dumps(self.fields()))


# Fields that do not change what a run learns: a resume may change them without a warning.
BOOKKEEPING_OPTIONS = frozenset({"model_dir", "resume", "load_epoch", "from_run", "num_epochs", "disp_batches",
                                 "top_k", "progress", "debug", "data_nthreads", "compile"})


def changed_options(saved, config):
    """[(name, checkpoint's value, this run's value)] of the fields other than
    `BOOKKEEPING_OPTIONS` that differ from a checkpoint's configuration `saved` (its flat
    ``args``; a field the checkpoint does not know is not compared)."""
    now = config.flat()
    return [(name, saved[name], now[name]) for name in sorted(now)
            if name in saved and name not in BOOKKEEPING_OPTIONS and saved[name] != now[name]]
