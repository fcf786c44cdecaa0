"""Pure parts of the predictor: combiners, MD5 modes, output files, wire format, views, batches."""
import collections
import json
import os

import numpy as np
import pytest

from data.categories import CategoryMap
from data.md5_dict import build_dictionary, image_md5, product_hash
from helpers import jpeg_bytes, write_bson
from models.backends import get_backend
from predict import messages
from predict.combine import COMBINERS, combine_images, combine_models, parse_combiners
from predict.decode import DecodedProduct, Md5Counts, Views, check_products, decode_product
from predict.runner import Batcher
from predict.md5_modes import apply_md5_mode, apply_product_hash, image_vector, parse_md5_modes
from predict.outputs import Predictions, PredictionWriter, RowArrayWriter, npy_header, top_classes
from predict.pipeline import PipelineConfig, check_decode_on
from predict.sources import Product

TWO = np.array([[0.5, 0.3, 0.2],
                [0.1, 0.6, 0.3]], np.float32)


def normalised(v):
    v = np.asarray(v, np.float64)
    return v / v.sum()


@pytest.mark.parametrize("combiner, expected", [
    ("mean", [0.3, 0.45, 0.25]),
    ("geometric", normalised([np.sqrt(0.05), np.sqrt(0.18), np.sqrt(0.06)])),
    ("rms", normalised([np.sqrt(0.13), np.sqrt(0.225), np.sqrt(0.065)])),
    ("power0.1", normalised([((0.5 ** 0.1 + 0.1 ** 0.1) / 2) ** 10, ((0.3 ** 0.1 + 0.6 ** 0.1) / 2) ** 10,
                             ((0.2 ** 0.1 + 0.3 ** 0.1) / 2) ** 10])),
    ("median", [0.3, 0.45, 0.25]),                  # two images: the median is the mean
    ("max", normalised([0.5, 0.6, 0.3])),
    ("first", [0.5, 0.3, 0.2]),
])
def test_combiners_match_hand_computed_values(combiner, expected):
    out = combine_images(TWO, combiner)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_median_of_three_images_and_single_image_identity():
    three = np.vstack([TWO, [[0.2, 0.2, 0.6]]])
    np.testing.assert_allclose(combine_images(three, "median"), [0.25, 0.375, 0.375], rtol=1e-6)
    for c in COMBINERS:
        np.testing.assert_allclose(combine_images(TWO[:1], c), TWO[0], rtol=1e-5)


def test_geometric_mean_lets_a_one_hot_image_veto_without_zeroing_the_row():
    out = combine_images([[1.0, 0.0, 0.0], [0.2, 0.7, 0.1]], "geometric")
    assert out.argmax() == 0 and np.isclose(out.sum(), 1) and np.all(np.isfinite(out))


def test_combiner_parsing_and_errors():
    assert parse_combiners("mean, geometric,mean") == ("mean", "geometric")
    with pytest.raises(ValueError, match="unknown combiner"):
        parse_combiners("mean,avg")
    with pytest.raises(ValueError, match="unknown combiner"):
        combine_images(TWO, "avg")


def test_model_ensembles_arithmetic_geometric_and_weights():
    a = np.array([[0.6, 0.4], [0.5, 0.5]], np.float32)
    b = np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)
    np.testing.assert_allclose(combine_models([a, b]), [[0.4, 0.6], [0.7, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(combine_models([a, b], [3, 1]), [[0.5, 0.5], [0.6, 0.4]], rtol=1e-6)
    geo = normalised([np.sqrt(0.6 * 0.2), np.sqrt(0.4 * 0.8)])
    np.testing.assert_allclose(combine_models([a, b], method="geometric")[0], geo, rtol=1e-5)
    with pytest.raises(ValueError, match="weights"):
        combine_models([a, b], [1])


def test_md5_modes_on_hand_made_counts():
    p = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    single = (np.array([2]), np.array([5]))
    # Classes in the order first seen with the MD5; classes 1 and 3 tie with 4 images each.
    mixed = (np.array([0, 1, 3]), np.array([3, 4, 4]))
    np.testing.assert_array_equal(image_vector(p, single, "unique"), [0, 0, 1, 0])
    assert image_vector(p, mixed, "unique") is p                 # several categories: unchanged
    np.testing.assert_array_equal(image_vector(p, mixed, "majority"), [0, 1, 0, 0])   # tie: 1 was seen first
    seen_3_first = (np.array([3, 0, 1]), np.array([4, 3, 4]))
    np.testing.assert_array_equal(image_vector(p, seen_3_first, "majority"), [0, 0, 0, 1])
    np.testing.assert_array_equal(image_vector(p, mixed, "majority_model"), [0, 0, 0, 1])   # the model prefers 3
    np.testing.assert_allclose(image_vector(p, mixed, "l1"), [3 / 11, 4 / 11, 0, 4 / 11])
    np.testing.assert_allclose(image_vector(p, mixed, "l2"), [3 / np.sqrt(41), 4 / np.sqrt(41), 0, 4 / np.sqrt(41)])
    # softmax of the full count vector, zeros included: exp([3, 4, 0, 4]) normalised.
    np.testing.assert_allclose(image_vector(p, mixed, "softmax"), np.exp([3, 4, 0, 4]) / np.exp([3, 4, 0, 4]).sum(),
                               rtol=1e-6)
    wide = np.full(5270, 1 / 5270, np.float32)
    one_count = image_vector(wide, (np.array([7]), np.array([1])), "softmax")
    assert one_count.dtype == np.float32 and one_count.sum() == pytest.approx(1, rel=1e-5)
    assert one_count.argmax() == 7 and one_count[7] == pytest.approx(np.e / (np.e + 5269), rel=1e-5)
    for mode in ("none", "unique", "majority", "majority_model", "l1", "l2", "softmax"):
        assert image_vector(p, None, mode) is p                  # MD5 not in the dictionary
    probs = np.stack([p, p[::-1]])
    out = apply_md5_mode(probs, [single, None], "unique")
    np.testing.assert_array_equal(out, [[0, 0, 1, 0], p[::-1]])
    assert apply_md5_mode(probs, [None, None], "unique") is probs
    assert parse_md5_modes("none,unique") == ("none", "unique")
    assert parse_md5_modes("softmax,majority_model") == ("softmax", "majority_model")
    with pytest.raises(ValueError, match="unknown MD5 mode"):
        parse_md5_modes("median")


def test_majority_follows_the_training_files_first_seen_order(tmp_path):
    """Dictionary -> Md5Counts -> majority: a tie goes to the category seen first with the
    MD5 in train.bson, as the reference's ``Counter.most_common(1)[0]``, not to the lower id."""
    shared, other = jpeg_bytes(1), jpeg_bytes(2)
    docs = [{"_id": 1, "category_id": 20, "imgs": [{"picture": shared}]},
            {"_id": 2, "category_id": 10, "imgs": [{"picture": shared}, {"picture": other}]},
            {"_id": 3, "category_id": 10, "imgs": [{"picture": other}]}]
    dictionary = build_dictionary(write_bson(str(tmp_path / "train.bson"), docs), workers=1, progress=False)
    csv = tmp_path / "categories.csv"
    csv.write_text("category_id,category_level1,category_level2,category_level3\n10,a,b,c\n20,a,b,d\n")
    counts = Md5Counts(dictionary, CategoryMap.from_csv(str(csv)))([image_md5(shared), image_md5(other), b"\0" * 16])
    reference = collections.Counter(d["category_id"] for d in docs for i in d["imgs"] if i["picture"] == shared)
    assert reference.most_common(1)[0][0] == 20
    assert [c.tolist() for c in counts[0]] == [[1, 0], [1, 1]] and counts[2] is None   # class 1 = category 20
    assert [c.tolist() for c in counts[1]] == [[0], [2]]
    probs = np.array([0.9, 0.1], np.float32)                   # the model prefers class 0
    np.testing.assert_array_equal(image_vector(probs, counts[0], "majority"), [0, 1])
    np.testing.assert_array_equal(image_vector(probs, counts[0], "majority_model"), [1, 0])


def test_product_hash_overrides_exactly_the_matched_products():
    predicted = np.array([4, 2, 2, 0, 1])
    hash_class = np.array([-1, 2, 3, -1, 0])
    fixed, changed = apply_product_hash(predicted, hash_class)
    np.testing.assert_array_equal(fixed, [4, 2, 3, 0, 0])
    np.testing.assert_array_equal(changed, [False, False, True, False, True])


def test_npy_header_with_reserved_length_loads(tmp_path):
    header = npy_header(np.float16, (1 << 62, 7))
    assert len(header) % 64 == 0
    small = npy_header(np.float16, (3, 7), length=len(header))
    assert len(small) == len(header)
    path = tmp_path / "x.npy"
    path.write_bytes(small + np.arange(21, dtype=np.float16).tobytes())
    np.testing.assert_array_equal(np.load(path), np.arange(21, dtype=np.float16).reshape(3, 7))


def test_row_writer_takes_rows_in_any_order_with_a_small_buffer(tmp_path):
    path = str(tmp_path / "rows.npy")
    writer = RowArrayWriter(path, (3,), np.float16, buffer_bytes=12)      # flushes every 2 rows
    order = [5, 0, 3, 1, 4, 2, 6]
    for row in order:
        writer.write(row, [row, row + 0.5, -row])
    writer.close(7)
    out = np.load(path, mmap_mode="r")
    assert out.shape == (7, 3) and out.dtype == np.float16
    np.testing.assert_array_equal(out[:, 0], np.arange(7))
    np.testing.assert_array_equal(out[:, 2], -np.arange(7))
    with pytest.raises(ValueError, match="shape"):
        RowArrayWriter(str(tmp_path / "y.npy"), (3,), np.float16).write(0, [1, 2])


def test_prediction_folder_round_trip_and_atomic_publication(tmp_path):
    folder = str(tmp_path / "model")
    hashes = [bytes([k]) * 16 for k in range(3)]
    for attempt in range(2):          # the second run replaces the first folder whole
        writer = PredictionWriter(folder, 4, ["mean.none", "max.none"], top_k=2)
        assert not os.path.exists(os.path.join(folder, "manifest.json")) or attempt == 1
        for row in (2, 0, 1):
            v = np.array([0.1, 0.2, 0.3, 0.4]) if row != 1 else np.array([0.7, 0.1, 0.1, 0.1])
            writer.write(row, 100 + row + attempt, row, 1 + row, hashes[row], {"mean.none": v, "max.none": v[::-1]})
        writer.close(3, {"name": "model", "attempt": attempt})
    preds = Predictions(folder)
    assert preds.manifest["attempt"] == 1 and preds.variants == ("mean.none", "max.none") and len(preds) == 3
    np.testing.assert_array_equal(preds.ids, [101, 102, 103])
    np.testing.assert_array_equal(preds.labels, [0, 1, 2])
    np.testing.assert_array_equal(preds.n_images, [1, 2, 3])
    assert bytes(preds.product_hash[2]) == hashes[2]
    np.testing.assert_array_equal(preds.top("mean.none"), [[3, 2], [0, 1], [3, 2]])
    np.testing.assert_array_equal(preds.top("max.none")[0], [0, 1])
    assert preds.probs("mean.none").dtype == np.float16
    assert sorted(os.listdir(tmp_path)) == ["model"]            # no temporary folders left
    with pytest.raises(KeyError, match="geometric.none"):
        preds.probs("geometric.none")


def test_unfinished_folder_is_refused(tmp_path):
    writer = PredictionWriter(str(tmp_path / "m"), 3, ["mean.none"])
    writer.write(0, 1, -1, 1, b"\0" * 16, {"mean.none": np.ones(3) / 3})
    with pytest.raises(FileNotFoundError, match="manifest"):
        Predictions(str(tmp_path / "m"))
    writer.discard()
    assert os.listdir(tmp_path) == []


def test_top_classes_breaks_ties_by_class():
    np.testing.assert_array_equal(top_classes(np.array([0.2, 0.4, 0.2, 0.2]), 3), [1, 0, 2])


def test_views_flip_and_crops():
    rgb = np.arange(180 * 180 * 3, dtype=np.uint32).reshape(180, 180, 3).astype(np.uint8)
    views = Views.parse("flip").of(rgb)
    assert views.shape == (2, 180, 180, 3)
    np.testing.assert_array_equal(views[1], rgb[:, ::-1])
    both = Views.parse("flip,crops", crop_size=90)
    assert both.count == 12 and both.of(rgb).shape == (12, 180, 180, 3)
    np.testing.assert_array_equal(both.of(rgb)[7], both.of(rgb)[1][:, ::-1])   # mirrored top-left crop
    assert Views.parse("none").count == 1
    with pytest.raises(ValueError, match="unknown test-time view"):
        Views.parse("rotate")


def test_decode_product_md5s_hash_and_counts():
    jpegs = [jpeg_bytes(3), jpeg_bytes(4)]
    product = Product(7, 1234, 2, jpegs, "x.bson", offset=99)
    decoded = decode_product(product, Views(flip=True), md5_counts=lambda md5s: [None, (np.array([1]), np.array([2]))])
    assert decoded.pixels.shape == (4, 180, 180, 3) and decoded.good == [True, True]
    assert decoded.md5s == [image_md5(j) for j in jpegs] and decoded.product_hash == product_hash(decoded.md5s)
    assert decoded.counts[0] is None and decoded.counts[1][0].tolist() == [1]


def test_wire_format_round_trips_without_pickle():
    product = Product(3, 42, 5, [b"abc", b"defg"], "t.rec", record=17)
    back = messages.product_from_frames(messages.product_frames(product))
    assert back == product
    decoded = DecodedProduct(3, 42, 5, 2, [True, False], np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3),
                             [b"a" * 16, b"b" * 16], b"h" * 16, [(np.array([1, 2]), np.array([3, 4])), None],
                             ["image 1 bad"])
    frames = messages.decoded_frames(decoded)
    assert json.loads(frames[0])["pixels"] == [2, 4, 4, 3]
    again = messages.decoded_from_frames([memoryview(bytes(f)) for f in frames])
    np.testing.assert_array_equal(again.pixels, decoded.pixels)
    assert again.md5s == decoded.md5s and again.product_hash == decoded.product_hash and again.good == [True, False]
    assert again.counts[0][1].tolist() == [3, 4] and again.counts[1] is None
    probs = np.random.RandomState(0).rand(2, 1, 5).astype(np.float32)
    meta, got, group = messages.result_from_frames(messages.result_frames(decoded, probs, 1))
    np.testing.assert_array_equal(got, probs)
    assert group == 1
    assert meta.pixels is None and meta.problems == ["image 1 bad"]
    bad = messages.result_frames(decoded, probs)
    with pytest.raises(messages.MessageError, match="shape"):
        messages.result_from_frames([bad[0], bad[1], bytes(bad[2])[:-4]])


def test_batcher_never_splits_a_product():
    def product(n):
        return DecodedProduct(0, 0, -1, n, [True] * n, np.zeros((n, 1, 1, 3), np.uint8), [], b"")

    batcher = Batcher(4)
    sizes = []
    for n in (1, 2, 2, 6, 1, 3):
        sizes += [[len(d.pixels) for d in b] for b in batcher.add(product(n))]
    sizes.append([len(d.pixels) for d in batcher.take()])
    assert sizes == [[1, 2], [2], [6], [1, 3], []]


def check_product(product, skip_bad=False, md5_counts=None):
    return check_products([product], skip_bad, md5_counts)[0]


def test_check_product_forwards_the_jpegs_that_pass_the_structural_check():
    """--decode-on device: the decoders' MD5s, hash and counts, without decoding; a picture that
    fails data.jpeg's check is reported with its place (skip_bad) or stops the product."""
    jpegs = [jpeg_bytes(3), jpeg_bytes(4)[:-40], jpeg_bytes(5)]          # the second one is truncated
    product = Product(7, 1234, 2, jpegs, "t.rec", record=17)
    checked = check_product(product, skip_bad=True, md5_counts=lambda md5s: [None] * len(md5s))
    assert checked.pixels is None and checked.jpegs == [jpegs[0], jpegs[2]] and checked.good == [True, False, True]
    assert checked.md5s == [image_md5(j) for j in jpegs] and checked.product_hash == product_hash(checked.md5s)
    assert checked.counts == [None] * 3 and checked.inputs(n_views=2) == 4
    assert checked.problems == ["t.rec, product 1234: record 17: image 1 is not a decodable JPEG "
                                f"({len(jpegs[1])} bytes): truncated (no end-of-image marker)"]
    with pytest.raises(ValueError, match=r"t\.rec, product 1234: record 17: image 1 is not a decodable JPEG"):
        check_product(product)
    # the model worker's verdict on a picture that passed: the same located error, or left out
    with pytest.raises(ValueError, match=r"t\.rec, product 1234: record 17: image 2 \(9 bytes\) is not"):
        checked.drop_image(2, "(9 bytes) is not a decodable JPEG", skip_bad=False)
    # several products checked at once (one structural check over all their pictures): the same
    other = Product(8, 99, -1, [b"", jpeg_bytes(6)], "t.rec", record=20)
    together = check_products([product, other], skip_bad=True)
    assert [(c.good, c.jpegs, c.problems, c.md5s) for c in together] == \
        [(c.good, c.jpegs, c.problems, c.md5s) for c in (check_product(product, True), check_product(other, True))]
    assert together[1].problems == ["t.rec, product 99: record 20: image 0 is not a decodable JPEG (0 bytes): "
                                    "empty picture"]
    checked.drop_image(2, "(9 bytes) is not a decodable JPEG", skip_bad=True)
    assert checked.good == [True, False, False] and checked.problems[1].endswith("image 2 (9 bytes) is not a "
                                                                                   "decodable JPEG")


def test_wire_format_of_jpegs_for_the_device():
    """decoded message with JPEG frames: one frame per good image, counted by the header and
    checked against the good flags; no pickle."""
    product = Product(3, 42, 5, [jpeg_bytes(1), b"", jpeg_bytes(2)], "x.bson", offset=99)
    checked = check_product(product, skip_bad=True)
    frames = messages.decoded_frames(checked)
    header = json.loads(frames[0])
    assert len(frames) == 4 and header["jpegs"] == 2 and header["where"] == {"path": "x.bson", "offset": 99,
                                                                             "record": None}
    again = messages.decoded_from_frames([memoryview(bytes(f)) for f in frames])
    assert [bytes(j) for j in again.jpegs] == checked.jpegs and again.pixels is None
    assert again.good == [True, False, True] and again.md5s == checked.md5s and again.where == checked.where
    assert str(again.error("image 2 bad")) == "x.bson: offset 99, product 42: image 2 bad"
    with pytest.raises(messages.MessageError, match="1 JPEG frames, the header says 2"):
        messages.decoded_from_frames(frames[:3])
    with pytest.raises(messages.MessageError, match="4 frames in a decoded message of pixels"):
        messages.decoded_from_frames(messages.decoded_frames(decode_product(product, Views(), True)) + [b"x"])
    batcher = Batcher(6, n_views=2)             # 2 images x 2 views a product
    assert batcher.add(checked) == [] and batcher.add(checked) == [[checked]] and len(batcher) == 1


def test_decode_on_device_needs_pytorch_model_workers():
    class Handle:
        def __init__(self, framework):
            self.name, self.backend = f"a {framework} model", get_backend(framework)

    device = PipelineConfig(decode_on="device")
    with pytest.raises(ValueError, match="--decode-on device needs PyTorch model workers.*--backend torch"):
        check_decode_on(device, [Handle("mxnet")])
    check_decode_on(device, [Handle("torch")])
    check_decode_on(PipelineConfig(), [Handle("mxnet")])
    with pytest.raises(ValueError, match="decode_on must be one of"):
        PipelineConfig(decode_on="gpu")
