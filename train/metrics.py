"""Classification metrics under MXNet's names: image-level and product-level.

Names as MXNet's ``mx.metric`` prints them (and as the reference logs carry them):
``accuracy``, ``top_k_accuracy_5``, ``cross-entropy`` (mean -log p(true class), without
label smoothing), plus ``product_accuracy``: the accuracy of the arg-max of each
product's averaged image probabilities (``data.products.ProductAccuracy``). Framework-free:
each backend sums its batches on its devices into the totals read here.
"""
import collections

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
