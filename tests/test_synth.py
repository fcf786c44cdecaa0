"""Tests of data.synth: files in Kaggle's Cdiscount format, checked with pymongo's bson and cv2."""
import collections
import csv
import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import bson
import cv2
import numpy as np
import pytest

from data import synth

SMALL = dict(train_products=600, test_products=200, categories=12, seed=7, placeholder_share=0.03)


def read_bson(path):
    with open(path, "rb") as f:
        return list(bson.decode_file_iter(f))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def md5(data):
    return hashlib.md5(data).hexdigest()


def decode_jpeg(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


class Dataset:
    """A generated folder, decoded once: documents, categories and hidden test labels."""

    def __init__(self, folder, summary):
        self.folder = folder
        self.summary = summary
        self.train = read_bson(os.path.join(folder, "train.bson"))
        self.test = read_bson(os.path.join(folder, "test.bson"))
        self.category_rows = read_csv(os.path.join(folder, "category_names.csv"))
        solution = read_csv(os.path.join(folder, "test_solution.csv"))
        self.solution_header = solution[0]
        self.test_labels = {int(pid): int(cid) for pid, cid in solution[1:]}

    def labelled(self, side):
        """(category_id, document) pairs; test labels come from test_solution.csv."""
        if side == "train":
            return [(doc["category_id"], doc) for doc in self.train]
        return [(self.test_labels[doc["_id"]], doc) for doc in self.test]

    def md5_categories(self, sides=("train", "test")):
        categories = collections.defaultdict(set)
        for side in sides:
            for category_id, doc in self.labelled(side):
                for image in doc["imgs"]:
                    categories[md5(image["picture"])].add(category_id)
        return categories


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("synth"))
    return Dataset(folder, synth.generate(folder, progress=False, **SMALL))


@pytest.fixture(scope="module")
def small_products():
    """The `SynthProduct`s of the SMALL dataset, straight from the generator."""
    return list(synth.generate_products(synth.SynthOptions(**SMALL)))


def test_train_documents_follow_kaggle_schema(dataset):
    category_ids = {int(row[0]) for row in dataset.category_rows[1:]}
    for doc in dataset.train:
        assert list(doc) == ["_id", "imgs", "category_id"]
        assert type(doc["_id"]) is int and type(doc["category_id"]) is int
        assert doc["category_id"] in category_ids
        assert 1 <= len(doc["imgs"]) <= 4
        for image in doc["imgs"]:
            assert list(image) == ["picture"] and isinstance(image["picture"], bytes)


def test_test_documents_have_no_category(dataset):
    for doc in dataset.test:
        assert list(doc) == ["_id", "imgs"]
        assert type(doc["_id"]) is int and 1 <= len(doc["imgs"]) <= 4


def test_bson_file_is_a_plain_concatenation_of_length_prefixed_documents(dataset):
    with open(os.path.join(dataset.folder, "train.bson"), "rb") as f:
        data = f.read()
    offset, count = 0, 0
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 4], "little")
        assert bson.decode(data[offset:offset + length])["_id"] == dataset.train[count]["_id"]
        offset, count = offset + length, count + 1
    assert offset == len(data) and count == len(dataset.train)


def test_product_ids_ascend_with_gaps_and_sides_are_disjoint_but_interleaved(dataset):
    train_ids = [doc["_id"] for doc in dataset.train]
    test_ids = [doc["_id"] for doc in dataset.test]
    for ids in (train_ids, test_ids):
        assert np.all(np.diff(ids) > 0)
    assert len(train_ids) == SMALL["train_products"] and len(test_ids) == SMALL["test_products"]
    assert not set(train_ids) & set(test_ids)
    all_ids = sorted(train_ids + test_ids)
    assert np.any(np.diff(all_ids) > 1), "ids should have gaps"
    assert min(test_ids) < max(train_ids) and min(train_ids) < max(test_ids)


def test_category_csv_has_kaggle_header_and_unsorted_ten_digit_ids(dataset):
    header, rows = dataset.category_rows[0], dataset.category_rows[1:]
    assert header == ["category_id", "category_level1", "category_level2", "category_level3"]
    ids = [int(row[0]) for row in rows]
    assert len(rows) == SMALL["categories"] == len(set(ids))
    assert all(len(row[0]) == 10 and row[0].startswith("1000") for row in rows)
    assert ids != sorted(ids), "class id = row order must differ from id order"
    assert rows == sorted(rows, key=lambda row: row[1:]), "rows are sorted by names, like Kaggle's"


def test_category_names_form_a_three_level_tree_with_accents():
    categories = synth.build_categories(300, seed=4)
    rows = synth.category_rows(categories)[1:]
    parent_of_level2 = collections.defaultdict(set)
    for _, level1, level2, _ in rows:
        parent_of_level2[level2].add(level1)
    assert all(len(parents) == 1 for parents in parent_of_level2.values())
    assert (len({row[1] for row in rows}), len(parent_of_level2)) == synth.tree_shape(300)
    assert len({row[3] for row in rows}) == 300
    assert any(not name.isascii() for row in rows for name in row[1:])
    assert all(name == name.upper() for row in rows for name in row[1:])


def test_tree_shape_matches_the_official_category_file(real_category_names):
    rows = read_csv(real_category_names)[1:]
    assert synth.tree_shape(len(rows)) == (len({row[1] for row in rows}), len({row[2] for row in rows}))


def test_default_demo_categories_have_a_tree_unsorted_ids_and_accents():
    rows = synth.category_rows(synth.build_categories(synth.SynthOptions().categories, seed=0))[1:]
    ids = [row[0] for row in rows]
    assert ids != sorted(ids)
    assert (len({row[1] for row in rows}), len({row[2] for row in rows})) == synth.tree_shape(len(rows))
    assert len({row[1] for row in rows}) >= 2
    assert any(not name.isascii() for row in rows for name in row[1:])


def test_every_picture_is_a_180x180_colour_jpeg(dataset):
    for doc in dataset.train + dataset.test:
        for image in doc["imgs"]:
            assert image["picture"][:2] == b"\xff\xd8"
            decoded = decode_jpeg(image["picture"])
            assert decoded is not None and decoded.shape == (180, 180, 3)


def test_image_counts_follow_the_full_train_file_distribution(dataset):
    counts = collections.Counter(len(doc["imgs"]) for doc in dataset.train + dataset.test)
    n_products = sum(counts.values())
    shares = np.array([counts[k] / n_products for k in (1, 2, 3, 4)])
    assert set(counts) == {1, 2, 3, 4}
    assert np.abs(shares - synth.IMAGES_PER_PRODUCT_SHARES).max() < 0.06
    assert 1.5 < sum(k * c for k, c in counts.items()) / n_products < 2.0


def test_jpeg_sizes_are_realistic(dataset):
    sizes = np.array([len(image["picture"]) for doc in dataset.train for image in doc["imgs"]])
    low, median, high = np.percentile(sizes, [5, 50, 95])
    assert 1500 < low and high < 12000 and 3500 < median < 8000


def test_jpeg_sizes_resemble_the_official_sample(dataset, real_train_example):
    real = np.array([len(image["picture"]) for doc in read_bson(real_train_example) for image in doc["imgs"]])
    ours = np.array([len(image["picture"]) for doc in dataset.train for image in doc["imgs"]])
    for q in (10, 50, 90):
        assert 0.7 < np.percentile(ours, q) / np.percentile(real, q) < 1.4, q


def test_duplicates_stay_within_a_category_except_placeholders(dataset):
    md5_categories = dataset.md5_categories()
    images = [image["picture"] for _, doc in dataset.labelled("train") + dataset.labelled("test") for image in doc["imgs"]]
    assert len(md5_categories) == dataset.summary["distinct_images"]
    assert len(images) - len(md5_categories) == dataset.summary["duplicate_images"] > 0.1 * len(images)
    conflicting = {digest for digest, categories in md5_categories.items() if len(categories) > 1}
    assert 1 <= len(conflicting) <= synth.SynthOptions().placeholders
    products_per_conflicting_md5 = collections.Counter(
        md5(doc["imgs"][0]["picture"]) for _, doc in dataset.labelled("train") + dataset.labelled("test")
        if len(doc["imgs"]) == 1 and md5(doc["imgs"][0]["picture"]) in conflicting)
    assert sum(products_per_conflicting_md5.values()) == dataset.summary["placeholder_products"]
    assert max(len(md5_categories[digest]) for digest in conflicting) >= 3


def test_placeholders_are_shared_pictures_of_no_category(dataset):
    renderer = synth.ImageRenderer(SMALL["seed"])
    placeholder_md5s = {md5(renderer.placeholder(k)) for k in range(synth.SynthOptions().placeholders)}
    md5_categories = dataset.md5_categories()
    seen = placeholder_md5s & set(md5_categories)
    assert seen and all(len(md5_categories[digest]) > 1 for digest in seen)
    assert len(set().union(*(md5_categories[d] for d in seen))) == dataset.summary["placeholder_categories"]


def test_test_products_reuse_training_pictures_with_the_right_label(dataset):
    train_md5_categories = dataset.md5_categories(("train",))
    reused = [(category_id, md5(image["picture"])) for category_id, doc in dataset.labelled("test")
              for image in doc["imgs"] if md5(image["picture"]) in train_md5_categories]
    assert len(reused) >= dataset.summary["test_images_from_train"] > 0
    unique_label_hits = [(c, d) for c, d in reused if len(train_md5_categories[d]) == 1]
    assert unique_label_hits and all(train_md5_categories[d] == {c} for c, d in unique_label_hits)


def test_some_test_products_repeat_a_training_product_image_list(dataset):
    def product_hash(doc):
        return ",".join(sorted({md5(image["picture"]) for image in doc["imgs"]}))

    train_hashes = collections.defaultdict(set)
    for category_id, doc in dataset.labelled("train"):
        train_hashes[product_hash(doc)].add(category_id)
    multi_image_matches = [(c, doc) for c, doc in dataset.labelled("test")
                           if len(doc["imgs"]) > 1 and product_hash(doc) in train_hashes]
    assert multi_image_matches
    assert all(train_hashes[product_hash(doc)] == {c} for c, doc in multi_image_matches)


def test_test_solution_lists_every_test_product(dataset):
    assert dataset.solution_header == ["_id", "category_id"]
    assert list(dataset.test_labels) == [doc["_id"] for doc in dataset.test]
    assert set(dataset.test_labels.values()) <= {int(row[0]) for row in dataset.category_rows[1:]}


def test_category_sizes_are_long_tailed(dataset):
    sizes = sorted(collections.Counter(doc["category_id"] for doc in dataset.train).values(), reverse=True)
    assert sizes[0] > 4 * sizes[-1]
    assert sizes[0] < 0.5 * len(dataset.train)


def test_meta_file_matches_summary_and_files(dataset):
    with open(os.path.join(dataset.folder, "synth_meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta == {key: value for key, value in dataset.summary.items() if key != "speed"}
    assert meta["generator_version"] == synth.GENERATOR_VERSION
    assert meta["options"] == {**vars(synth.SynthOptions()), **SMALL}
    for side, docs in (("train", dataset.train), ("test", dataset.test)):
        assert meta[side]["products"] == len(docs)
        assert meta[side]["images"] == sum(len(doc["imgs"]) for doc in docs)
        assert meta[side]["bytes"] == os.path.getsize(os.path.join(dataset.folder, f"{side}.bson"))
    assert dataset.summary["speed"]["mb_per_second"] > 0


def colour_histograms(labelled):
    """(labels, product ids, features) of every image: square roots of 4x4x4 colour histograms."""
    labels, product_ids, features = [], [], []
    for category_id, doc in labelled:
        for image in doc["imgs"]:
            histogram = cv2.calcHist([decode_jpeg(image["picture"])], [0, 1, 2], None, [4, 4, 4], [0, 256] * 3)
            labels.append(category_id)
            product_ids.append(doc["_id"])
            features.append(np.sqrt(histogram.ravel() / histogram.sum()))
    return np.array(labels), np.array(product_ids), np.array(features)


def nearest_mean(train_labelled, test_labelled):
    """Nearest class mean of colour histograms, fitted on train: (test labels, product ids,
    squared distances to each class mean, classes)."""
    train_labels, _, train_x = colour_histograms(train_labelled)
    test_labels, test_products, test_x = colour_histograms(test_labelled)
    classes = np.unique(train_labels)
    means = np.stack([train_x[train_labels == c].mean(axis=0) for c in classes])
    return test_labels, test_products, ((test_x[:, None, :] - means[None]) ** 2).sum(axis=2), classes


def majority_share(labels):
    return collections.Counter(labels).most_common(1)[0][1] / len(labels)


@pytest.fixture(scope="module")
def default_nearest_mean(dataset):
    return nearest_mean(dataset.labelled("train"), dataset.labelled("test"))


def test_categories_are_learnable_but_not_trivially_separable(default_nearest_mean):
    """A crude classifier beats chance by far, yet siblings and ambiguous products keep it
    far from perfect (the same classifier is near 1.0 with the difficulty options off)."""
    labels, _, distances, classes = default_nearest_mean
    accuracy = (classes[distances.argmin(axis=1)] == labels).mean()
    assert accuracy > majority_share(labels) + 0.2 and accuracy > 0.4
    assert accuracy < 0.75


def test_difficulty_options_make_the_data_harder(tmp_path, default_nearest_mean):
    easy_options = dict(SMALL, train_products=300, test_products=100, sibling_similarity=0.0, ambiguous_share=0.0,
                        product_variation=0.0, image_variation=0.0)
    easy = Dataset(str(tmp_path), synth.generate(str(tmp_path), progress=False, **easy_options))
    labels, _, distances, classes = nearest_mean(easy.labelled("train"), easy.labelled("test"))
    easy_accuracy = (classes[distances.argmin(axis=1)] == labels).mean()
    labels, _, distances, classes = default_nearest_mean
    assert easy_accuracy > 0.9 and easy_accuracy > (classes[distances.argmin(axis=1)] == labels).mean() + 0.25


def test_several_images_of_a_product_beat_one(default_nearest_mean):
    """Per-image variation: averaging a product's images classifies its images better than each alone."""
    labels, products, distances, classes = default_nearest_mean
    rows = collections.defaultdict(list)
    for row, product_id in enumerate(products):
        rows[product_id].append(row)
    multi = [r for r in rows.values() if len(r) > 1]
    image_accuracy = np.mean([classes[distances[row].argmin()] == labels[row] for r in multi for row in r])
    product_accuracy = np.mean([classes[distances[r].mean(axis=0).argmin()] == labels[r[0]] for r in multi])
    assert len(multi) >= 30 and product_accuracy > image_accuracy


def test_sibling_categories_share_most_of_their_style():
    categories = synth.build_categories(60, seed=3)
    pairs = [(i, j) for i in range(60) for j in range(i + 1, 60)]
    siblings = [(i, j) for i, j in pairs if categories[i].level2_index == categories[j].level2_index]
    others = [(i, j) for i, j in pairs if categories[i].level1_index != categories[j].level1_index]
    assert siblings and others

    def hue_gap(styles, pairs):
        return np.mean([abs((styles[i].main_hsv[0] - styles[j].main_hsv[0] + 90) % 180 - 90) for i, j in pairs])

    alike = synth.category_styles(categories, seed=3, sibling_similarity=1.0)
    assert all(alike[i] == alike[j] for i, j in siblings)
    default = synth.category_styles(categories, seed=3)
    assert all(default[i].shape == default[j].shape for i, j in siblings)
    assert hue_gap(default, siblings) < 12 < 30 < hue_gap(default, others)
    distinct = synth.category_styles(categories, seed=3, sibling_similarity=0.0)
    assert hue_gap(distinct, siblings) > 30
    assert sum(distinct[i] == distinct[j] for i, j in siblings) == 0


def test_ambiguous_products_keep_their_label_but_take_another_style(small_products):
    categories = synth.build_categories(SMALL["categories"], SMALL["seed"])
    products = small_products
    fresh = [p for p in products if not p.copied and not p.placeholder]
    own_styles = [{image.style_class for image in p.images if not image.reused} for p in fresh]
    assert all(len(styles) <= 1 for styles in own_styles)  # one style per product
    ambiguous = [(p, styles.pop()) for p, styles in zip(fresh, own_styles) if styles and styles != {p.class_id}]
    assert 0.06 < len(ambiguous) / len(fresh) < 0.14  # ambiguous_share 0.1
    sibling_share = np.mean([categories[style].level2_index == categories[p.class_id].level2_index
                             for p, style in ambiguous])
    assert 0.6 < sibling_share < 0.9  # ambiguous_sibling_share 0.75 (a few classes have no sibling)
    off_style = [image for p in products for image in p.images
                 if image.style_class is not None and image.style_class != p.class_id]
    assert any(image.reused for image in off_style), "MD5 tricks should be able to fix some ambiguous pictures"
    none = synth.SynthOptions(**dict(SMALL, ambiguous_share=0.0, train_products=200, test_products=0))
    assert all(image.style_class in (None, p.class_id) for p in synth.generate_products(none) for image in p.images)


def test_meta_counts_ambiguous_products(dataset):
    assert 0 < dataset.summary["off_style_products"] <= dataset.summary["off_style_images"]
    assert dataset.summary["off_style_products"] < 0.2 * (SMALL["train_products"] + SMALL["test_products"])


def file_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in synth.OUTPUT_NAMES}


@pytest.mark.parametrize("categories", [20, 5270])
def test_approximate_product_size_holds_for_default_options(categories):
    estimate = synth.estimate_bytes_per_product(synth.SynthOptions(categories=categories), sample_products=300)
    assert 0.85 < estimate / synth.APPROX_BYTES_PER_PRODUCT < 1.15


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(tmp_path):
    options = dict(train_products=60, test_products=20, categories=6, progress=False)
    synth.generate(str(tmp_path / "a"), seed=3, **options)
    synth.generate(str(tmp_path / "b"), seed=3, **options)
    synth.generate(str(tmp_path / "c"), seed=4, **options)
    first, again, other = (file_bytes(str(tmp_path / name)) for name in "abc")
    assert first == again
    for name in ("train.bson", "test.bson", "category_names.csv"):
        assert first[name] != other[name]


def test_documents_of_the_generator_are_those_written(dataset, small_products):
    assert [p.document() for p in small_products if p.side == "train"] == dataset.train
    assert [p.document() for p in small_products if p.side == "test"] == dataset.test


def test_no_output_appears_when_generation_fails(tmp_path, monkeypatch):
    real_generate_products = synth.generate_products

    def failing_generate_products(options, categories=None):
        for count, product in enumerate(real_generate_products(options, categories)):
            if count == 30:
                raise RuntimeError("disk full")
            yield product

    monkeypatch.setattr(synth, "generate_products", failing_generate_products)
    with pytest.raises(RuntimeError, match="disk full"):
        synth.generate(str(tmp_path), train_products=50, test_products=10, categories=4, progress=False)
    assert os.listdir(tmp_path) == []


def test_invalid_options_are_rejected(tmp_path, capsys):
    with pytest.raises(ValueError, match="duplicate_share"):
        synth.SynthOptions(duplicate_share=1.5)
    with pytest.raises(ValueError):
        synth.SynthOptions(categories=0)
    with pytest.raises(ValueError, match="sibling_similarity"):
        synth.SynthOptions(sibling_similarity=1.5)
    with pytest.raises(ValueError, match="image_variation"):
        synth.SynthOptions(image_variation=-1)
    with pytest.raises(SystemExit, match="2"):
        synth.main(["--out", str(tmp_path), "--placeholder-share", "-0.1"])
    assert capsys.readouterr().err.startswith("synth: error: placeholder_share")
    assert os.listdir(tmp_path) == []


def test_cli_writes_the_dataset_and_prints_a_summary(tmp_path, capsys):
    synth.main(["--out", str(tmp_path), "--train-products", "40", "--test-products", "10",
                "--categories", "5", "--seed", "2", "--no-progress"])
    output = capsys.readouterr().out
    assert "train.bson: 40 products" in output and "MB/s" in output
    assert sorted(os.listdir(tmp_path)) == sorted(synth.OUTPUT_NAMES)
    assert len(read_bson(str(tmp_path / "test.bson"))) == 10


def test_cli_says_when_a_file_will_be_empty_and_refuses_to_write_nothing(tmp_path):
    """A test-only set (the predictor's benchmark makes one) is written, with a warning naming
    the empty train.bson (it used to be written without a word); no product at all is refused."""
    result = subprocess.run([sys.executable, "-m", "data.synth", "--out", str(tmp_path / "test_only"),
                             "--train-products", "0", "--test-products", "3", "--no-progress"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    assert f"synth: warning: --train-products 0: {tmp_path / 'test_only' / 'train.bson'} will hold no product" in \
        result.stderr.splitlines()
    assert len(read_bson(str(tmp_path / "test_only" / "train.bson"))) == 0
    assert len(read_bson(str(tmp_path / "test_only" / "test.bson"))) == 3
    with pytest.raises(ValueError, match="no product to write"):
        synth.SynthOptions(train_products=0, test_products=0)


def test_cli_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "data.synth", "--help"], capture_output=True, text=True, check=True)
    assert "--train-products" in result.stdout and "--duplicate-share" in result.stdout
    for option in ("--sibling-similarity", "--ambiguous-share", "--ambiguous-sibling-share", "--product-variation",
                   "--image-variation"):
        assert option in result.stdout


@pytest.mark.slow
def test_killed_run_leaves_no_complete_looking_file(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "data.synth", "--out", str(tmp_path),
                                "--train-products", "100000", "--no-progress"])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            partial = glob.glob(str(tmp_path / ".train.bson.*.tmp"))
            if partial and os.path.getsize(partial[0]) > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("generation never started writing")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not set(os.listdir(tmp_path)) & set(synth.OUTPUT_NAMES)


PEAK_RSS_SCRIPT = """
import resource, sys
from data import synth
synth.generate(sys.argv[1], train_products=int(sys.argv[2]), test_products=0, categories=50, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_stays_bounded_when_the_output_grows(tmp_path):
    def peak_rss_kib(n_products):
        result = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(tmp_path / str(n_products)), str(n_products)],
                                capture_output=True, text=True, check=True)
        return int(result.stdout.split()[-1]), os.path.getsize(tmp_path / str(n_products) / "train.bson")

    small_rss, small_bytes = peak_rss_kib(1500)
    large_rss, large_bytes = peak_rss_kib(6000)
    assert large_bytes - small_bytes > 30e6
    assert (large_rss - small_rss) * 1024 < 0.3 * (large_bytes - small_bytes)
