"""Category map: class id = CSV row order, level ids, unknown ids are errors."""
import csv

import numpy as np
import pytest

from data.categories import CategoryMap, UnknownCategoryError


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["category_id", "category_level1", "category_level2", "category_level3"])
        w.writerows(rows)
    return str(path)


def test_class_ids_follow_row_order_not_id_order(tmp_path):
    rows = [(1000000300, "MAISON", "CUISINE", "POÊLE"), (1000000100, "MAISON", "JARDIN", "PELLE"),
            (1000000200, "AUTO", "PNEUS", "PNEU ÉTÉ")]
    cmap = CategoryMap.from_csv(write_csv(tmp_path / "c.csv", rows))
    assert [cmap.class_of(r[0]) for r in rows] == [0, 1, 2]
    np.testing.assert_array_equal(cmap.classes_of([1000000200, 1000000300, 1000000100]), [2, 0, 1])
    assert cmap.category_of(1) == 1000000100
    assert cmap.names_of(2) == ("AUTO", "PNEUS", "PNEU ÉTÉ")
    assert cmap.level1_of_class.tolist() == [0, 0, 1] and cmap.level2_of_class.tolist() == [0, 1, 2]


def test_unknown_category_is_an_error_naming_the_file(tmp_path):
    path = write_csv(tmp_path / "c.csv", [(1000000300, "A", "B", "C")])
    cmap = CategoryMap.from_csv(path)
    with pytest.raises(UnknownCategoryError, match=f"category_id 42 is not in {path}"):
        cmap.class_of(42)
    with pytest.raises(UnknownCategoryError, match="category_id 7"):
        cmap.classes_of([1000000300, 7])


@pytest.mark.parametrize("rows, message", [
    ([(1, "A", "B", "C"), (1, "A", "B", "D")], "appears on more than one row"),
    ([("x1", "A", "B", "C")], "not an integer"),
    ([(1, "A", "B")], "has 3 fields"),
])
def test_malformed_csv_is_rejected(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        CategoryMap.from_csv(write_csv(tmp_path / "c.csv", rows))


def test_official_category_names(real_category_names):
    cmap = CategoryMap.from_csv(real_category_names)
    assert (len(cmap), cmap.n_level1, cmap.n_level2) == (5270, 49, 483)
    with open(real_category_names, encoding="utf-8") as f:
        ids = [int(line.split(",")[0]) for line in f.readlines()[1:]]
    np.testing.assert_array_equal(cmap.classes_of(ids), np.arange(5270))
    assert ids != sorted(ids)
