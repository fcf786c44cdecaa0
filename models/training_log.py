"""The training-log format of MXNet's ``Module.fit`` and ``Speedometer``: its writers and its reader.

Training writes its log with the line functions here (``train.fit``; ``Epoch[i]`` counts
from 0, as in MXNet, and its checkpoint is ``epoch-{i+1:04d}``; a run starts with its
arguments, one ``INFO   name: value`` line each, ``load_epoch`` being the epoch it continues
from); the reports (``predict.ensemble``'s accuracy table) read those logs and the
reference's alike with `read_training_log`. Lines it understands, with or without a ``2017-11-18 00:37:19,018 host root[pid] INFO``
or ``INFO:root:`` prefix::

    INFO   load_epoch: 15                               (argument dump: starts a session)
    Epoch[3] Batch [100]  Speed: 246.71 samples/sec  accuracy=0.23 ...
    Epoch[3] Train-accuracy=0.641146
    Epoch[3] Time cost=47802.159
    Epoch[3] Validation-accuracy=0.743781              (also cate1_acc, product_accuracy, ...)
    Saved checkpoint to "runs/dpn92/epoch-0004.params"  (ignored)

A model's training often spans several sessions (resumed after a crash or to change the
learning rate), in one file or several (``M10_stderr.log``, ``M10_stderr2.log``, ...). The
sessions are merged into one timeline: a session resumed at epoch ``k`` (its
``load_epoch``, or an epoch number lower than the last one seen) replaces everything from
epoch ``k`` on, as resuming from the epoch-``k`` checkpoint discards the later epochs.

The top-1 accuracy is logged as ``accuracy`` or, by the reference's custom metric, as
``cate1_acc``; `EpochRecord.accuracy` takes whichever the epoch has.
"""
import os
import re
from dataclasses import dataclass, field

ACCURACY_METRICS = ("accuracy", "cate1_acc")

_METRIC = re.compile(r"Epoch\[(\d+)\] (Train|Validation)-([^=\s]+)=(\S+)")
_TIME_COST = re.compile(r"Epoch\[(\d+)\] Time cost=([0-9.eE+-]+)")
_SPEED = re.compile(r"Epoch\[(\d+)\] Batch \[\d+\]\s+Speed: ([0-9.eE+-]+) samples/sec")
_ARGUMENT = re.compile(r"\bINFO\s{2,}(\w+): ?(.*?)\s*$")
_FILE_SUFFIX = re.compile(r"[_.-]?(stderr|stdout|train|log)\d*$", re.IGNORECASE)


def _format_values(values):
    return "\t".join("%s=%f" % (name, value) for name, value in values.items())


def speed_line(epoch, batch, samples_per_sec, values):
    return "Epoch[%d] Batch [%d]\tSpeed: %.2f samples/sec\t%s" % (epoch, batch, samples_per_sec,
                                                                    _format_values(values))


def epoch_lines(epoch, prefix, values):
    """``Epoch[e] Train-accuracy=...`` lines; `prefix` is ``Train`` or ``Validation``."""
    return ["Epoch[%d] %s-%s=%f" % (epoch, prefix, name, value) for name, value in values.items()]


def time_cost_line(epoch, seconds):
    return "Epoch[%d] Time cost=%.3f" % (epoch, seconds)


def checkpoint_line(params_path):
    return 'Saved checkpoint to "%s"' % params_path


def argument_lines(arguments):
    """The argument dump that opens a run's log, as MXNet's examples print it."""
    return ["  %s: %s" % (name, value) for name, value in arguments.items()]


@dataclass
class EpochRecord:
    epoch: int
    train: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    time_cost: float = None
    speeds: list = field(default_factory=list)

    @property
    def accuracy(self):
        """Validation top-1 accuracy of this epoch, or None when it has none."""
        return next((self.validation[m] for m in ACCURACY_METRICS if m in self.validation), None)


@dataclass
class TrainingLog:
    name: str
    paths: list
    epochs: dict            # epoch number -> EpochRecord, the merged timeline
    args: dict              # arguments of the last session that dumped them

    def validation_accuracies(self):
        """``[(epoch, accuracy)]`` in epoch order, epochs without a validation accuracy left out."""
        return [(e, r.accuracy) for e, r in sorted(self.epochs.items()) if r.accuracy is not None]

    @property
    def final(self):
        """``(epoch, accuracy)`` of the last validated epoch of the timeline."""
        accs = self.validation_accuracies()
        if not accs:
            raise ValueError(f"{self.name}: no validation accuracy in {', '.join(self.paths)}")
        return accs[-1]

    @property
    def best(self):
        return max(self.validation_accuracies(), key=lambda ea: ea[1])

    @property
    def mean_speed(self):
        """Mean training throughput (samples/s) over every speed line, or None."""
        speeds = [s for r in self.epochs.values() for s in r.speeds]
        return sum(speeds) / len(speeds) if speeds else None


class _Timeline:
    def __init__(self):
        self.epochs, self.args, self.last_epoch = {}, {}, None
        self._in_args = False

    def resume_at(self, epoch):
        for e in [e for e in self.epochs if e >= epoch]:
            del self.epochs[e]
        self.last_epoch = epoch

    def record(self, epoch):
        if self.last_epoch is not None and epoch < self.last_epoch:
            self.resume_at(epoch)          # restarted from an earlier checkpoint
        self.last_epoch = epoch
        return self.epochs.setdefault(epoch, EpochRecord(epoch))

    def feed(self, line):
        m = _ARGUMENT.search(line)
        if m:
            if not self._in_args:                # the first line of a new argument dump
                self._in_args, self.args = True, {}
            self.args[m[1]] = m[2]
            if m[1] == "load_epoch" and m[2].isdigit():
                self.resume_at(int(m[2]))
            return
        self._in_args = False
        m = _METRIC.search(line)
        if m:
            rec = self.record(int(m[1]))
            (rec.train if m[2] == "Train" else rec.validation)[m[3]] = float(m[4])
            return
        m = _TIME_COST.search(line)
        if m:
            self.record(int(m[1])).time_cost = float(m[2])
            return
        m = _SPEED.search(line)
        if m:
            self.record(int(m[1])).speeds.append(float(m[2]))


def natural_key(path):
    """Sort key that puts ``x_stderr2.log`` before ``x_stderr10.log``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)]


def log_name(path):
    """The model a log file belongs to: its name without ``_stderrN.log`` and the like, or its
    folder's name for a bare ``train.log``."""
    stem = os.path.basename(path)
    stem = stem[:-4] if stem.endswith(".log") else stem
    name = _FILE_SUFFIX.sub("", stem)
    return name or os.path.basename(os.path.dirname(os.path.abspath(path)))


def read_training_log(paths, name=None):
    """Merge the log files of one model (given in session order) into a `TrainingLog`."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    timeline = _Timeline()
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                timeline.feed(line)
    return TrainingLog(name or log_name(paths[0]), [str(p) for p in paths], dict(sorted(timeline.epochs.items())),
                       timeline.args)


def read_training_logs(paths):
    """Group log files by model (`log_name`), order each group naturally, and read them."""
    groups = {}
    for path in paths:
        groups.setdefault(log_name(path), []).append(path)
    return [read_training_log(sorted(groups[name], key=natural_key), name) for name in sorted(groups, key=natural_key)]
