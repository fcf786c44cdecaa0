"""Training: ``python train/train.py`` (or ``python -m train.train``) and its pieces.

Framework-free: ``args`` (command line) -> ``config`` (the typed, frozen configuration),
``fit`` (the driver: start point, schedule, freeze phases, epoch loop, logs, run folder),
``run_folder`` (the run-folder contract that training, resuming and prediction share),
``schedule`` (the learning rate), ``backend`` (the interface a framework implements),
``recipes``, ``curves``, ``logs``, ``data_iter``'s record files (its iterators load MXNet),
``launch`` (distributed jobs).

MXNet (``backend_mxnet`` and what it uses): ``step`` (one training iteration),
``evaluate`` (validation), ``optim`` (optimisers, weight decay), ``metrics``,
``devices`` (GPUs, CPU contexts, kvstores) and ``checkpoint`` (weights and optimizer
state of a run folder, ``load_for_inference``).
"""
