"""Category map: class id = CSV row order, level ids, unknown ids are errors."""
import csv

import numpy as np
import pytest

from data.categories import CategoryMap, UnknownCategoryError


def write_csv(path, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
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
    ([(1, "A", "B", "C"), (1, "A", "B", "D")], "category_id 1 appears twice, on lines 2 and 3"),
    ([("x1", "A", "B", "C")], "not an integer"),
    ([(1, "A", "B")], "has 3 fields"),
])
def test_malformed_csv_is_rejected(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        CategoryMap.from_csv(write_csv(tmp_path / "c.csv", rows))


def test_a_duplicate_id_is_named_with_both_lines(tmp_path):
    """The id that is duplicated, not the most frequent one's neighbour: 3 here, not 5."""
    rows = [(5, "A", "B", "C"), (3, "A", "B", "D"), (9, "A", "E", "F"), (3, "G", "H", "I")]
    path = write_csv(tmp_path / "c.csv", rows)
    with pytest.raises(ValueError) as error:
        CategoryMap.from_csv(path)
    assert str(error.value) == f"{path}: category_id 3 appears twice, on lines 3 and 5"


def test_excel_utf8_csv_with_a_byte_order_mark_is_read_like_plain_utf8(tmp_path):
    rows = [(1000000300, "MAISON", "CUISINE", "POÊLE"), (1000000100, "AUTO", "PNEUS", "PNEU ÉTÉ")]
    plain = CategoryMap.from_csv(write_csv(tmp_path / "plain.csv", rows))
    excel = CategoryMap.from_csv(write_csv(tmp_path / "excel.csv", rows, encoding="utf-8-sig"))
    assert open(tmp_path / "excel.csv", "rb").read(3) == b"\xef\xbb\xbf"
    np.testing.assert_array_equal(excel.category_ids, plain.category_ids)
    assert [excel.names_of(k) for k in range(2)] == [plain.names_of(k) for k in range(2)] == [r[1:] for r in rows]


def test_a_latin1_csv_is_an_error_naming_the_file_and_line(tmp_path):
    path = write_csv(tmp_path / "latin1.csv", [(1, "MAISON", "CUISINE", "POELE"), (2, "AUTO", "PNEUS", "PNEU ÉTÉ")],
                     encoding="latin-1")
    with pytest.raises(ValueError) as error:
        CategoryMap.from_csv(path)
    assert str(error.value).startswith(f"{path}: line 3: byte 0xc9 is not UTF-8")


def test_level2_categories_are_level1_level2_pairs(tmp_path):
    """Two level-1 categories with a level-2 name in common have two level-2 categories."""
    rows = [(1, "MAISON", "SECURITE", "ALARME"), (2, "BATEAU", "SECURITE", "GILET"),
            (3, "MAISON", "SECURITE", "SERRURE"), (4, "BATEAU", "MOTEUR", "HELICE")]
    cmap = CategoryMap.from_csv(write_csv(tmp_path / "c.csv", rows))
    assert cmap.level1_of_class.tolist() == [0, 1, 0, 1] and cmap.n_level1 == 2
    assert cmap.level2_of_class.tolist() == [0, 1, 0, 2] and cmap.n_level2 == 3


def test_official_category_names(real_category_names):
    cmap = CategoryMap.from_csv(real_category_names)
    assert (len(cmap), cmap.n_level1, cmap.n_level2) == (5270, 49, 486)
    assert len(set(cmap.level2_names)) == 483                  # 3 level-2 names under two level-1 names each
    with open(real_category_names, encoding="utf-8") as f:
        ids = [int(line.split(",")[0]) for line in f.readlines()[1:]]
    np.testing.assert_array_equal(cmap.classes_of(ids), np.arange(5270))
    assert ids != sorted(ids)
