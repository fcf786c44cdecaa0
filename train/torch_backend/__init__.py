"""The PyTorch training backend (``models.backends``' ``torch``): `backend` (the
``train.backend.Backend``, DistributedDataParallel under torchrun) and its DataLoader and
device-decoding input (`loader`). Everything here runs with PyTorch: never in an MXNet process.
"""
