"""The registry of compute backends: one entry per framework, with what it can do.

Every choice of a backend reads this table: training's ``--backend`` choices and the
checks of the options that only some backends honour (``train.args``), the trainer a run
gets (``train.backend``), the model worker the predictor starts for each model and which
runs it can load (``predict.runner``), and the listing of ``python -m models``. Nothing
compares backend names elsewhere.

A backend lives in three folders named for it, one per stage of the data flow:
``models/<name>_nets/`` (its networks, built from the families of ``models.families``,
which name their builder there), ``train/<name>_backend/`` (a ``train.backend.Backend``
subclass as ``BACKEND``) and ``predict/<name>_runner.py`` (a ``predict.runner.Runner``
subclass as ``RUNNER``). Adding one (docs/DESIGN.md, "Adding a backend"): those folders,
one `Backend` entry here, its tests. Importing this module imports no framework; the
modules it names are imported only by the process that runs that framework.
"""
import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from typing import Mapping

from models.runs import GLUON_PARAMS, SAFETENSORS, weights_format

# Where the PyTorch backend can decode the training JPEGs: OpenCV in the input workers, or
# batched on the training device (nvJPEG on a GPU).
WORKER_DECODE, DEVICE_DECODE = "workers", "device"


@dataclass(frozen=True, eq=False)      # one entry per backend: compared (and hashed) by identity
class Backend:
    """What a backend is and can do.

    ``name``: its ``--backend`` name and the ``framework`` a run folder records;
    ``framework``: the framework's name in messages; ``package``: the Python package of the framework (whether it is installed is asked
    without importing it); ``nets``/``trainer``/``runner``: its modules per stage;
    ``dtypes``: training's ``--dtype`` choices; ``decode_places``: where it can decode
    training pictures (``--decode-on``), and ``decodes_on_device``: whether its model
    workers decode a batch on their device (predict's ``--decode-on device``);
    ``checks_records``: whether its training input checks each record's frame and label as it
    reads it (else the driver checks every record before the first batch:
    ``data.record_file.read_record_headers``); ``kvstores``: the ``--kv-store`` values it
    honours (the first its default);
    ``compiles``: whether ``--compile`` means anything to it; ``launcher``: how it spreads
    one run over several GPUs or machines, and ``relauncher``: the module whose
    ``relaunch(config, argv)`` gives the command that runs a training command line again
    in several processes (None: one process drives every device) and whose
    ``check_devices(config)`` refuses, before that, devices the machine lacks; ``weight_formats``: the
    run folders' weight formats (``models.runs.weights_format``) it loads; ``optimizers``:
    training's ``--optimizer`` choices it has; ``ema``: whether it can keep an exponential
    moving average of the weights (``--ema-decay``); ``gpus``: which
    GPUs it runs on; ``refusals``: why an option it does not honour means nothing to it,
    by option (the refusal's line says so).
    """

    name: str
    framework: str
    package: str
    description: str
    nets: str
    trainer: str
    runner: str
    dtypes: tuple
    decode_places: tuple
    decodes_on_device: bool
    checks_records: bool
    kvstores: tuple
    compiles: bool
    launcher: str
    weight_formats: tuple
    optimizers: tuple
    ema: bool
    gpus: str
    relauncher: str = None
    refusals: Mapping[str, str] = field(default_factory=dict)

    def installed(self):
        """Whether its framework can be imported here (asked without importing it)."""
        return importlib.util.find_spec(self.package) is not None

    def loads(self, meta):
        """Whether it can load the weights of the checkpoint whose metadata is `meta`."""
        return weights_format(meta) in self.weight_formats

    def module(self, stage):
        """Its module of `stage` (``nets``, ``trainer``, ``runner`` or ``relauncher``),
        imported: the first three load the framework, so only the process that runs it may ask."""
        return importlib.import_module(getattr(self, stage))


BACKENDS = {backend.name: backend for backend in (
    Backend(name="mxnet", framework="MXNet", package="mxnet",
            description="MXNet 1.9.1 Gluon, the reference's framework",
            nets="models.mxnet_nets", trainer="train.mxnet_backend.backend", runner="predict.mxnet_runner",
            dtypes=("float32", "float16"), decode_places=(WORKER_DECODE,), decodes_on_device=False,
            # ImageRecordIter's C++ reader aborts the process on a damaged frame and trains on any label.
            checks_records=False,
            kvstores=("device", "local", "nccl", "dist_sync", "dist_device_sync"), compiles=False,
            launcher="kvstore: python -m train.mxnet_backend.launch -n WORKERS -- python train/train.py ...",
            weight_formats=(GLUON_PARAMS,), optimizers=("nadam", "adam", "sgd", "nag"), ema=False,
            gpus="CUDA GPUs up to Ampere/Ada (sm_86), and CPUs",
            refusals={"--decode-on": "MXNet's ImageRecordIter decodes in its own threads",
                      "--dtype": "MXNet 1.9.1 has no bfloat16 training",
                      "--compile": "Gluon hybridizes its networks itself",
                      "--optimizer": "MXNet 1.9.1 has no AdamW optimizer, only the operator mx.nd.contrib.adamw_update",
                      "--ema-decay": "the MXNet backend keeps no moving average of the weights"}),
    Backend(name="torch", framework="PyTorch", package="torch",
            description="PyTorch: timm's twins of the networks, and any timm network (timm/<name>)",
            nets="models.torch_nets", trainer="train.torch_backend.backend", runner="predict.torch_runner",
            dtypes=("float32", "float16", "bfloat16"), decode_places=(WORKER_DECODE, DEVICE_DECODE),
            decodes_on_device=True, checks_records=True, kvstores=("device",), compiles=True,
            launcher="torchrun (train.py starts it itself for several GPUs of one machine)",
            weight_formats=(GLUON_PARAMS, SAFETENSORS), optimizers=("nadam", "adam", "sgd", "nag", "adamw"), ema=True,
            gpus="any CUDA GPU PyTorch supports (Hopper and newer), and CPUs",
            relauncher="train.torch_backend.launch",
            refusals={"--kv-store": "PyTorch reduces gradients with DistributedDataParallel under torchrun: "
                                    "several GPUs of one machine need only --devices, several machines torchrun's "
                                    "own options"}),
)}

DEFAULT_BACKEND = "mxnet"


def compiler_problem():
    """Why ``--compile`` cannot build its kernels on this machine, in one line, or None.
    ``torch.compile``'s Triton (GPUs) and Inductor (CPUs) build them with the system's C
    compiler (``CC``, else cc, gcc or clang on the PATH); a bare machine without one fails
    deep inside the first compiled step, with an error that does not say so."""
    if os.environ.get("CC") or any(shutil.which(name) for name in ("cc", "gcc", "clang")):
        return None
    return ("--compile needs a C compiler to build its kernels (Triton and Inductor compile with $CC, cc, gcc or "
            "clang) and this machine has none on its PATH: install one (e.g. apt-get install gcc) or leave --compile "
            "out")


def backend_names():
    """The registered backends' names, in registration order."""
    return tuple(BACKENDS)


def get_backend(name):
    """The `Backend` called `name`; ``ValueError`` naming the registered ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError("unknown backend %r; choose from %s" % (name, ", ".join(BACKENDS))) from None


def backends_with(capability):
    """The names of the backends for which ``capability(backend)`` holds."""
    return tuple(name for name, backend in BACKENDS.items() if capability(backend))
