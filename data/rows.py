"""Per-item tables in groups: the images of products, as rows of one table.

The index, the digests and the conversion keep per-image facts as flat tables in index order:
image `j` of the product at position `p` is row `first[p] + j`. These helpers turn counts
into those first rows, gather the rows of chosen products, and read mostly-zero columns
kept as their non-zero entries.
"""
import numpy as np


def first_rows(counts):
    """(len(counts) + 1,) int64 cumulative sum from 0: the items of group i are rows
    first[i]:first[i+1] of a table of all groups' items (e.g. images of products)."""
    first = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    return first


def image_rows(first_image, positions):
    """Rows of the images of the products at `positions` (in that order), given the first row
    of each product's images (`BsonIndex.first_image`)."""
    positions = np.asarray(positions, np.int64)
    counts = first_image[positions + 1] - first_image[positions]
    before = np.zeros(len(positions), np.int64)
    np.cumsum(counts[:-1], out=before[1:])
    return np.repeat(first_image[positions] - before, counts) + np.arange(int(counts.sum()))


def sparse_lookup(sparse_rows, values, rows):
    """The values at `rows` of a mostly-zero per-image column held as its non-zero
    (ascending `sparse_rows`, `values`)."""
    rows = np.asarray(rows, np.int64)
    out = np.zeros(len(rows), values.dtype)
    if len(sparse_rows) and len(rows):
        k = np.minimum(np.searchsorted(sparse_rows, rows), len(sparse_rows) - 1)
        hit = sparse_rows[k] == rows
        out[hit] = values[k[hit]]
    return out

