"""Classification metrics under MXNet's names: image-level and product-level.

Names as MXNet's ``mx.metric`` prints them (and as the reference logs carry them):
``accuracy``, ``top_k_accuracy_5``, ``cross-entropy`` (mean -log p(true class), without
label smoothing), plus ``product_accuracy``: the accuracy of the arg-max of each
product's averaged image probabilities. Framework-free: each backend sums its batches on its
devices (``train.metrics_mxnet`` for MXNet) into the totals read here.
"""
import collections

import numpy as np

from predict.combine import mean_vectors, product_hits

ACCURACY = "accuracy"
CROSS_ENTROPY = "cross-entropy"
PRODUCT_ACCURACY = "product_accuracy"
LOSS = "loss"


def top_k_name(k):
    return "top_k_accuracy_%d" % k


# Columns of a backend's metric sums (`metrics_from_totals` reads them): correct, top-k
# correct, cross-entropy, loss.
_CORRECT, _TOP_K, _CROSS_ENTROPY, _LOSS = range(4)


def metrics_from_totals(totals, samples, top_k, with_loss=False):
    samples = max(samples, 1)
    values = collections.OrderedDict()
    values[ACCURACY] = totals[_CORRECT] / samples
    values[top_k_name(top_k)] = totals[_TOP_K] / samples
    values[CROSS_ENTROPY] = totals[_CROSS_ENTROPY] / samples
    if with_loss:
        values[LOSS] = totals[_LOSS] / samples
    return values


class ProductAccuracy:
    """Product-level accuracy over records streamed in file order.

    The images of a product must be consecutive (the validation ``.rec`` keeps the BSON
    file order); a product may be split across batches. Only the probability sum and image
    count of the product still open are kept, so memory does not grow with the number of
    classes x products. A product id that comes back after other products raises
    ``ValueError``. A product is scored as predict scores its ``mean`` combiner
    (`predict.combine.mean_vectors`, `predict.combine.product_hits`), so the accuracy
    logged here is predict's ``mean.none`` on the same records.
    """

    def __init__(self):
        self.products = 0
        self.correct = 0
        self._closed = set()
        self._open = None  # (product_id, probability sum, image count, label)

    def update(self, probabilities, product_ids, labels):
        if len(product_ids) == 0:
            return
        starts = np.concatenate([[0], np.flatnonzero(np.diff(product_ids)) + 1])
        sums = np.add.reduceat(np.asarray(probabilities, np.float64), starts, axis=0)
        counts = np.diff(np.append(starts, len(product_ids)))
        run_ids, run_labels = product_ids[starts], labels[starts]
        if self._open is not None:
            if run_ids[0] == self._open[0]:
                sums[0] += self._open[1]
                counts[0] += self._open[2]
            else:
                self._close_open()
        self._check_not_seen(run_ids)
        self._close(run_ids[:-1], sums[:-1], counts[:-1], run_labels[:-1])
        self._open = (run_ids[-1], sums[-1], counts[-1], run_labels[-1])

    def _check_not_seen(self, product_ids):
        listed = product_ids.tolist()
        seen = sorted(self._closed.intersection(listed))
        if seen or len(set(listed)) != len(listed):
            raise ValueError("the images of product %s are not consecutive in the validation records; "
                             "product-level accuracy needs the .rec in BSON file order"
                             % (seen[0] if seen else listed))

    def _close(self, product_ids, sums, counts, labels):
        self._closed.update(product_ids.tolist())
        self.products += len(product_ids)
        self.correct += int(product_hits(mean_vectors(sums, counts), labels).sum())

    def _close_open(self):
        open_id, open_sum, open_count, open_label = self._open
        self._close(np.array([open_id]), open_sum[None], np.array([open_count]), np.array([open_label]))
        self._open = None

    def result(self):
        """Close the last product and return the accuracy."""
        if self._open is not None:
            self._close_open()
        return self.correct / max(self.products, 1)
