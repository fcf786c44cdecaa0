"""Category map: Kaggle `category_id` ↔ 0-based class id (row order of category_names.csv).

The rows of `category_names.csv` are not sorted by id; the reference (and therefore every
model of this project) numbers the classes in row order. A category id missing from the
file is an input error, never silently mapped.

The file is read as UTF-8, with or without the byte-order mark Excel writes ("CSV UTF-8");
a file in another encoding (Latin-1, Windows-1252) is an error naming the line, never read
with mangled names. A level-2 category is a (level 1, level 2) pair: the official file has
483 level-2 names but 486 level-2 categories, as three names (SECURITE, ONGLERIE,
PROTECTION - ENTRETIEN) stand under two level-1 categories each.
"""
import csv
import io

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

    def __init__(self, category_ids, level1, level2, level3, path="<memory>", lines=None):
        """`lines`: the line of the file each row comes from (for messages), else rows count from 1."""
        self.path = path
        self.category_ids = np.asarray(category_ids, np.int64)
        self.level1_names, self.level2_names, self.level3_names = list(level1), list(level2), list(level3)
        self._class_of = {}
        for row, category_id in enumerate(self.category_ids.tolist()):
            first = self._class_of.setdefault(category_id, row)
            if first != row:
                where = f"lines {lines[first]} and {lines[row]}" if lines else f"rows {first + 1} and {row + 1}"
                raise ValueError(f"{path}: category_id {category_id} appears twice, on {where}")
        self._sorted = np.argsort(self.category_ids)
        # Level ids number the distinct level-1 names and (level 1, level 2) pairs in order of first appearance.
        self.level1_of_class = _first_seen_ids(self.level1_names)
        self.level2_of_class = _first_seen_ids(list(zip(self.level1_names, self.level2_names)))

    @classmethod
    def from_csv(cls, path):
        reader = csv.reader(io.StringIO(_read_utf8(path), newline=""))
        header = next(reader, None)
        if header != HEADER:
            raise ValueError(f"{path}: header is {header}, expected {','.join(HEADER)}")
        rows, lines = [], []
        for row in reader:
            line = reader.line_num
            if len(row) != 4:
                raise ValueError(f"{path}: line {line} has {len(row)} fields, expected 4")
            try:
                rows.append((int(row[0]), row[1], row[2], row[3]))
            except ValueError:
                raise ValueError(f"{path}: line {line}: category_id {row[0]!r} is not an integer") from None
            lines.append(line)
        if not rows:
            raise ValueError(f"{path}: no categories")
        ids, l1, l2, l3 = zip(*rows)
        return cls(ids, l1, l2, l3, path=path, lines=lines)

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


def _read_utf8(path):
    """The text of a UTF-8 file, without the byte-order mark Excel writes; another encoding
    is a `ValueError` naming the file, the line and the byte."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: byte 0x{raw[e.start]:02x} is not UTF-8 (a Latin-1 or Windows "
                         f"file?): save it as UTF-8") from None


def _first_seen_ids(names):
    ids, table = np.empty(len(names), np.int64), {}
    for i, name in enumerate(names):
        ids[i] = table.setdefault(name, len(table))
    return ids
