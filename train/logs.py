"""The ``train`` logger: the console (above tqdm's bars) and the run's ``train.log``, in the
prefix format of every tool (``data.cli.LOG_FORMAT``); the lines themselves are
``models.training_log``'s (MXNet's ``Module.fit`` format).
"""
import logging

from tqdm import tqdm

from data.cli import LOG_FORMAT

LOGGER_NAME = "train"


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
