"""The MXNet Gluon training backend (``models.backends``' ``mxnet``): `backend` (the
``train.backend.Backend``), its ``ImageRecordIter`` input (`record_iter`), training step
(`step`), optimizers (`optim`), devices and kvstores (`devices`), validation (`evaluate`,
`metrics`), checkpoint files (`checkpoint`) and the distributed launcher (`launch`).
Everything here runs with MXNet: never in a PyTorch process.
"""
