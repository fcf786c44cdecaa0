"""Training: ``python train/train.py`` (or ``python -m train.train``) and its pieces.

``args`` (command line), ``fit`` (the run: start point, network, epochs, checkpoints),
``step`` (one training iteration), ``evaluate`` (validation), ``data_iter`` (RecordIO
input), ``optim`` (optimisers, weight decay, schedule), ``metrics`` and ``logs`` (MXNet's
names and log format), ``checkpoint`` (run folders, ``load_for_inference``), ``curves``,
``devices`` (GPUs, CPU contexts, kvstores) and ``launch`` (distributed jobs).
"""
