"""Validation of a network over a whole validation file: image- and product-level metrics."""
import mxnet as mx
import numpy as np
from mxnet import gluon

from data.products import ProductAccuracy
from data.record_file import DataFileError
from train import metrics
from train.mxnet_backend.metrics import RunningSums


def evaluate(net, batches, contexts, headers, top_k=5, dtype="float32"):
    """Validation metrics over an un-shuffled iterator of the whole validation file.

    `headers` (``data.record_file.RecordHeaders`` of the same file) gives each record's product
    id; the iterator's labels are checked against it batch by batch, so a validation
    file that is not the one the headers came from is caught. Records are counted against
    the headers, not the iterator's ``pad``: whatever a last batch holds past the file's
    last record (a wrap-around, stale memory) is left out.
    """
    sums = RunningSums(top_k)
    products = ProductAccuracy()
    position = 0
    for batch in batches:
        size = batch.data[0].shape[0]
        valid = min(size, len(headers.labels) - position)
        datas = gluon.utils.split_and_load(batch.data[0], contexts)
        labels = gluon.utils.split_and_load(batch.label[0], contexts)
        logits = [net(x.astype(dtype, copy=False)) for x in datas]
        per_device = size // len(contexts)
        kept = [max(0, min(per_device, valid - i * per_device)) for i in range(len(contexts))]
        logits = [z[:n] for z, n in zip(logits, kept) if n]
        labels = [y[:n] for y, n in zip(labels, kept) if n]
        sums.update(logits, labels)
        batch_labels = np.concatenate([y.asnumpy() for y in labels]).astype(np.int64)
        expected = headers.labels[position:position + valid]
        if not np.array_equal(batch_labels, expected):
            raise DataFileError("validation labels at records %d..%d differ from the file's headers"
                                          % (position, position + valid - 1))
        probabilities = np.concatenate([mx.nd.softmax(z.astype("float32", copy=False)).asnumpy() for z in logits])
        products.update(probabilities, headers.product_ids[position:position + valid], expected)
        position += valid
    if position != len(headers.labels):
        raise DataFileError("validation read %d records, the file holds %d" % (position, len(headers.labels)))
    values = sums.metrics()
    values[metrics.PRODUCT_ACCURACY] = products.result()
    return values
