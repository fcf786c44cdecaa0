"""Category map: Kaggle `category_id` ↔ 0-based class id (row order of category_names.csv).

The rows of `category_names.csv` are not sorted by id; the reference (and therefore every
model of this project) numbers the classes in row order. A category id missing from the
file is an input error, never silently mapped.
"""
import csv

import numpy as np

HEADER = ["category_id", "category_level1", "category_level2", "category_level3"]


class UnknownCategoryError(KeyError):
    def __init__(self, category_id, csv_path):
        self.category_id, self.csv_path = category_id, csv_path
        super().__init__(f"category_id {category_id} is not in {csv_path}")

    def __str__(self):
        return self.args[0]


class CategoryMap:
    """Class ids, names and level-1/level-2 groups of the categories of one CSV file."""

    def __init__(self, category_ids, level1, level2, level3, path="<memory>"):
        self.path = path
        self.category_ids = np.asarray(category_ids, np.int64)
        self.level1_names, self.level2_names, self.level3_names = list(level1), list(level2), list(level3)
        if len(set(self.category_ids.tolist())) != len(self.category_ids):
            dup = self.category_ids[np.argmax(np.bincount(np.unique(self.category_ids, return_inverse=True)[1]))]
            raise ValueError(f"{path}: category_id {dup} appears on more than one row")
        self._class_of = {c: i for i, c in enumerate(self.category_ids.tolist())}
        self._sorted = np.argsort(self.category_ids)
        # Level ids number the distinct level-1 / level-2 names in order of first appearance.
        self.level1_of_class = _first_seen_ids(self.level1_names)
        self.level2_of_class = _first_seen_ids(self.level2_names)

    @classmethod
    def from_csv(cls, path):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != HEADER:
                raise ValueError(f"{path}: header is {header}, expected {','.join(HEADER)}")
            rows = []
            for line, row in enumerate(reader, start=2):
                if len(row) != 4:
                    raise ValueError(f"{path}: line {line} has {len(row)} fields, expected 4")
                try:
                    rows.append((int(row[0]), row[1], row[2], row[3]))
                except ValueError:
                    raise ValueError(f"{path}: line {line}: category_id {row[0]!r} is not an integer") from None
        if not rows:
            raise ValueError(f"{path}: no categories")
        ids, l1, l2, l3 = zip(*rows)
        return cls(ids, l1, l2, l3, path=path)

    def __len__(self):
        return len(self.category_ids)

    @property
    def n_level1(self):
        return int(self.level1_of_class.max()) + 1

    @property
    def n_level2(self):
        return int(self.level2_of_class.max()) + 1

    def class_of(self, category_id):
        try:
            return self._class_of[int(category_id)]
        except KeyError:
            raise UnknownCategoryError(category_id, self.path) from None

    def classes_of(self, category_ids):
        """Vectorised `class_of`; raises `UnknownCategoryError` on the first unknown id."""
        ids = np.asarray(category_ids, np.int64)
        where = np.searchsorted(self.category_ids, ids, sorter=self._sorted)
        where = np.minimum(where, len(self) - 1)
        classes = self._sorted[where]
        unknown = self.category_ids[classes] != ids
        if np.any(unknown):
            raise UnknownCategoryError(int(ids[np.argmax(unknown)]), self.path)
        return classes

    def category_of(self, class_id):
        return int(self.category_ids[class_id])

    def names_of(self, class_id):
        return self.level1_names[class_id], self.level2_names[class_id], self.level3_names[class_id]


def _first_seen_ids(names):
    ids, table = np.empty(len(names), np.int64), {}
    for i, name in enumerate(names):
        ids[i] = table.setdefault(name, len(table))
    return ids
