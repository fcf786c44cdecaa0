"""The learning-rate schedules: a pure function of the position in the run.

The training driver (``train.fit``) sets the rate before every batch, whatever the
backend, so a resumed run follows the schedule exactly; it loads no framework. Two shapes:
the reference's steps (``step``: multiplied by a factor at given epochs) and the cosine
decay today's recipes use (``cosine``: from the base rate to a floor over a given number of
epochs, as timm's ``CosineLRScheduler`` without restarts, but per batch); either starts with
an optional linear warm-up.
"""
import math


def step_rate(progress, base_lr, step_epochs=(), factor=0.1):
    """``base_lr`` times ``factor`` for every epoch of ``step_epochs`` already reached."""
    return base_lr * factor ** sum(1 for step in step_epochs if progress >= step)


def cosine_rate(progress, base_lr, epochs, min_lr=0.0):
    """From ``base_lr`` at 0 to ``min_lr`` at ``epochs`` along half a cosine; ``min_lr`` after."""
    done = min(progress / epochs, 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * done))


def learning_rate_at(progress, base_lr, step_epochs=(), factor=0.1, warmup_epochs=0.0, warmup_begin_lr=0.0,
                     schedule="step", cosine_epochs=0.0, min_lr=0.0):
    """Learning rate after `progress` epochs (a float: epoch + fraction of it done).

    ``schedule`` ``step``: `step_rate`; ``cosine``: `cosine_rate` over ``cosine_epochs``. A
    linear warm-up from ``warmup_begin_lr`` over the first ``warmup_epochs`` leads to it.
    """
    if schedule == "cosine":
        lr = cosine_rate(progress, base_lr, cosine_epochs, min_lr)
    elif schedule == "step":
        lr = step_rate(progress, base_lr, step_epochs, factor)
    else:
        raise ValueError("unknown learning-rate schedule %r: step or cosine" % schedule)
    if progress < warmup_epochs:
        lr = warmup_begin_lr + (lr - warmup_begin_lr) * progress / warmup_epochs
    return lr
