"""Training: ``python train/train.py`` (or ``python -m train.train``) and its pieces.

Framework-free: ``args`` (command line) -> ``config`` (the typed, frozen configuration),
``fit`` (the driver: start point, schedule, freeze phases, epoch loop, logs, run folder:
``models.runs``), ``inputs`` (what an epoch reads: order, seeds, augmentation draws),
``schedule`` (the learning rate), ``metrics``, ``backend`` (the interface a framework
implements, and the trainer of a ``models.backends`` entry), ``recipes``, ``curves``,
``logs``.

One folder per backend (``models.backends``): ``mxnet_backend`` (MXNet Gluon) and
``torch_backend`` (PyTorch); each imports its framework, never the other's.
"""
