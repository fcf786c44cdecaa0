"""The seam between the training driver (``train.fit``) and a deep-learning framework.

The driver owns the policy of a run: where it starts and whether it resumes, the
learning-rate schedule, the freeze phases, the epoch loop, logging, the run folder's
metadata, ``metrics.jsonl`` and the curves. A `Backend` owns the mechanics: devices and
distribution, seeding, the network and its starting weights, the optimizer, the training
step (with gradient accumulation), the data iterators, evaluation, and the checkpoint's
weight and optimizer files. ``--backend`` chooses one of the registry ``models.backends``
(``train.config.ComputeConfig``), whose entry names its trainer module
(``train.<name>_backend.backend``, holding the subclass as ``BACKEND``); that module is
imported only when a run asks for it, so this module and the driver load no framework.
"""
import abc

from models.backends import get_backend


def backend_class(name):
    """The `Backend` subclass of backend `name` (``models.backends``); imports its framework."""
    return get_backend(name).module("trainer").BACKEND


def create_backend(name, config):
    """The `Backend` of backend `name` for the run `config` (a ``train.config.TrainConfig``):
    devices chosen, kvstore created, nothing built yet."""
    return backend_class(name)(config)


class Backend(abc.ABC):
    """One training process's framework side, for the run configured by ``config``.

    Attributes set by the constructor: ``framework`` (the run folder's ``framework``),
    ``rank`` and ``num_workers`` (this process's place in a distributed job; 0 and 1
    otherwise), ``devices`` (a list the log shows). Errors meant for the user are
    ``models.runs.CheckpointError``, ``data.record_file.DataFileError`` and the
    backend's `user_errors`; the framework's own errors are `framework_errors`.
    """

    framework = None
    # Whether every rank of a distributed run calls `evaluate` (each scores its share and the
    # results are combined); otherwise only rank 0 validates, the others train on.
    shares_validation = False
    # Set by `build`: the architecture fields that differ from the registered network's (a
    # model-zoo ResNeXt's widths read from its file, ``models.families.config_overrides``),
    # recorded in the run folder so that the run's network can be built again.
    config_overrides = None
    user_errors = ()          # exception types whose message is meant for the user
    framework_errors = ()     # the framework's exception types, told in one line by `describe_error`

    @staticmethod
    @abc.abstractmethod
    def describe_error(error):
        """The line of a framework error that says what went wrong, naming the framework."""

    @staticmethod
    @abc.abstractmethod
    def all_gpus():
        """Every GPU the framework sees, as ``--gpus`` takes them: ``"0,1,2,3"``, or ``""`` (the CPU)."""

    @abc.abstractmethod
    def check_loadable(self, run_dir, epoch, states=True):
        """Raise ``models.runs.DamagedCheckpointError`` naming the file when epoch
        `epoch`'s weights or (with `states`) optimizer state cannot be loaded."""

    @abc.abstractmethod
    def seed(self, seed):
        """Reseed the framework's random generators (initialisation, dropout)."""

    @abc.abstractmethod
    def build(self, start, data, logger):
        """Build the network with the weights ``train.fit.StartPoint`` `start` names (or the
        configured ``pretrained`` weights), the optimizer (with `start`'s state when it has
        one) and the training step, for the input `data` (``train.fit.RunData``)."""

    @abc.abstractmethod
    def set_frozen(self, frozen):
        """Train only the parameters matching the configured ``freeze_keep`` (`frozen`) or all
        of them; returns whether that changed."""

    @abc.abstractmethod
    def train_batches(self, data, epoch):
        """Epoch `epoch`'s training batches of this worker's shard, in an order fixed by
        (seed, epoch, rank); an unending iterator is allowed (the driver counts batches)."""

    @abc.abstractmethod
    def train_step(self, batch, lr):
        """Train on `batch` at learning rate `lr` (an optimizer step after every
        ``grad_accum`` batches); returns the number of images in the batch."""

    @abc.abstractmethod
    def take_window(self):
        """``(totals, samples)`` summed over the batches since the last call
        (``train.metrics.metrics_from_totals`` reads them), and start a new window. Every
        rank calls it at the same batches: a backend may sum the windows over the ranks."""

    @abc.abstractmethod
    def finish_epoch(self):
        """Wait until every queued computation is done (the epoch's time is then exact)."""

    @abc.abstractmethod
    def evaluate(self, data):
        """Image- and product-level metrics over the whole validation file of `data`, on
        rank 0, or on every rank with `shares_validation`."""

    @abc.abstractmethod
    def save(self, run_dir, epoch, meta):
        """Write epoch `epoch`'s weights and optimizer state, then its metadata `meta`
        (``models.runs.write_epoch_meta``, last); returns the weights' path."""
