"""Training logs in the format of MXNet's ``Module.fit`` and ``Speedometer``.

Lines (after the logging prefix)::

    Epoch[3] Batch [100]\tSpeed: 535.12 samples/sec\taccuracy=0.712345\t...
    Epoch[3] Train-accuracy=0.700000
    Epoch[3] Time cost=123.400
    Epoch[3] Validation-accuracy=0.730000
    Saved checkpoint to "runs/dpn92/epoch-0004.params"

``Epoch[i]`` counts from 0, as in MXNet; its checkpoint is ``epoch-{i+1:04d}``. A run
starts with its arguments, one ``INFO   name: value`` line each, ``load_epoch`` being the
epoch it continues from. ``predict.logs.read_training_log`` reads these logs and the
reference's alike.
"""
import logging

from tqdm import tqdm

from data.cli import LOG_FORMAT

LOGGER_NAME = "train"


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


class _TqdmHandler(logging.StreamHandler):
    """Console handler that prints above an active tqdm progress bar instead of through it."""

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging's contract: report, never raise
            self.handleError(record)


def setup_logging(log_path=None, console=True, level=logging.INFO):
    """The ``train`` logger, writing to the console and (appending) to `log_path`, in the
    format of every tool (``data.cli.LOG_FORMAT``)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT)
    handlers = [_TqdmHandler()] if console else []
    if log_path:
        handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger
