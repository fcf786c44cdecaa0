"""The learning-rate schedule of the reference recipes: a pure function of the position in the run.

The training driver (``train.fit``) sets the rate before every batch, so a resumed run
follows the schedule exactly; it loads no framework.
"""


def learning_rate_at(progress, base_lr, step_epochs=(), factor=0.1, warmup_epochs=0.0, warmup_begin_lr=0.0):
    """Learning rate after `progress` epochs (a float: epoch + fraction of it done).

    ``base_lr`` times ``factor`` for every epoch of ``step_epochs`` already reached, with
    a linear warm-up from ``warmup_begin_lr`` over the first ``warmup_epochs``.
    """
    lr = base_lr * factor ** sum(1 for step in step_epochs if progress >= step)
    if progress < warmup_epochs:
        lr = warmup_begin_lr + (lr - warmup_begin_lr) * progress / warmup_epochs
    return lr
