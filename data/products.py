"""Product-level scoring, defined once: a product's vector is the mean of its images'
probabilities, and it is right when the vector's arg-max is its label.

Training's validation (``train.fit`` through a backend's ``evaluate``, streamed over the
records of a validation ``.rec``: `ProductAccuracy`) and the predictor (``predict.aggregate``,
``predict.combine``'s ``mean`` combiner) score products with these functions, so the
``product_accuracy`` a training log shows is predict's ``mean.none`` on the same records.
"""
import numpy as np


def normalised(vector):
    total = vector.sum(axis=-1, keepdims=True)
    return vector / np.where(total > 0, total, 1)


def mean_vectors(sums, counts):
    """The ``mean`` combiner's vectors of several products at once, from each product's
    float64 sum of image probabilities and its number of images: what `combine_images`
    gives for each product, also when the sums were accumulated piecewise (training
    streams products split across batches)."""
    counts = np.asarray(counts, np.float64).reshape(-1, 1)
    return normalised(np.asarray(sums, np.float64) / counts).astype(np.float32)


def product_hits(vectors, labels):
    """Per vector: is its arg-max the label? (``(n, classes)`` vectors, n labels or one)."""
    return np.argmax(vectors, axis=-1) == labels


def accuracy(correct, products):
    """The product accuracy of `correct` right products out of `products` (0 for none)."""
    return correct / max(products, 1)


def _not_consecutive(product_id):
    return ValueError("the images of product %s are not consecutive in the validation records; product-level "
                      "accuracy needs the .rec in BSON file order" % product_id)


def product_ranges(product_ids, parts):
    """`parts` contiguous record ranges ``(start, stop)`` covering the records whose product
    ids are `product_ids` (file order), cut only between products, each at the first product
    starting at or after an even share of the records: each part scores whole products, so
    the counts summed over the parts give the accuracy over all records (distributed
    validation). ``ValueError`` when a product's images are not consecutive."""
    product_ids = np.asarray(product_ids)
    count = len(product_ids)
    starts = np.flatnonzero(np.r_[True, product_ids[1:] != product_ids[:-1]][:count])    # each product's first
    ids, repeats = np.unique(product_ids[starts], return_counts=True)
    if (repeats > 1).any():
        raise _not_consecutive(ids[repeats > 1][0])
    boundaries = np.append(starts, count)
    cuts = boundaries[np.searchsorted(boundaries, np.arange(1, parts) * count / parts)]
    bounds = np.concatenate([[0], cuts, [count]]).astype(int)
    return [(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:])]


class ProductAccuracy:
    """Product-level accuracy over records streamed in file order.

    The images of a product must be consecutive (the validation ``.rec`` keeps the BSON
    file order); a product may be split across batches. Only the probability sum and image
    count of the product still open are kept, so memory does not grow with the number of
    classes x products. A product id that comes back after other products raises
    ``ValueError``. A product is scored as predict scores its ``mean`` combiner
    (`mean_vectors`, `product_hits`), so the accuracy
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
            raise _not_consecutive(seen[0] if seen else listed)

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
        return accuracy(self.correct, self.products)
