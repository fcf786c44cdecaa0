"""models.params_file (numpy only) against MXNet's own NDArray files."""
import mxnet as mx
import numpy as np
import pytest

from models import params_file
from models.params_file import ParamsFormatError
from models.mxnet_nets.weights import structural_names
from models import mxnet_nets

DTYPES = ["float32", "float16", "float64", "uint8", "int32", "int8", "int64"]


def sample_arrays():
    rng = np.random.RandomState(0)
    return {"p_%s" % dtype: (rng.uniform(-100, 100, (2, 3, 1 + i)) if "int" not in dtype
                             else rng.randint(0, 100, (5, i + 1))).astype(dtype)
            for i, dtype in enumerate(DTYPES)}


def test_reads_what_mxnet_saves_and_writes_it_back_byte_for_byte(tmp_path):
    arrays = sample_arrays()
    path = str(tmp_path / "mx.params")
    mx.nd.save(path, {name: mx.nd.array(value, dtype=value.dtype) for name, value in arrays.items()})
    read = params_file.load(path)
    assert list(read) == list(arrays)
    for name, value in arrays.items():
        assert read[name].dtype == value.dtype
        np.testing.assert_array_equal(read[name], value)
    with open(path, "rb") as f:
        assert params_file.serialize(read) == f.read()


def test_mxnet_reads_what_it_writes(tmp_path):
    arrays = sample_arrays()
    path = str(tmp_path / "np.params")
    params_file.save(path, arrays)
    loaded = mx.nd.load(path)
    assert sorted(loaded) == sorted(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name].asnumpy(), value)


def test_unnamed_lists_and_numpy_shape_mode_files(tmp_path):
    path = str(tmp_path / "list.params")
    mx.nd.save(path, [mx.nd.array([1, 2]), mx.nd.array([[3]])])
    first, second = params_file.load(path)
    np.testing.assert_array_equal(first, [1, 2])
    np.testing.assert_array_equal(second, [[3]])
    with mx.util.np_shape(True):  # written with the NumPy-shape magic number
        mx.nd.save(path, {"a": mx.nd.array([4.0, 5.0])})
    np.testing.assert_array_equal(params_file.load(path)["a"], [4.0, 5.0])


def test_gluon_checkpoint_round_trip_through_numpy(tmp_path):
    net = mxnet_nets.get_model("dpn_tiny", classes=3)
    source = str(tmp_path / "net.params")
    net.save_parameters(source)
    arrays = params_file.load(source)
    assert set(arrays) == set(structural_names(net))
    copy = str(tmp_path / "copy.params")
    params_file.save(copy, {name: value * 2 for name, value in arrays.items()})
    net.load_parameters(copy)
    for name, param in structural_names(net).items():
        np.testing.assert_array_equal(param.data().asnumpy(), arrays[name] * 2)


def test_unreadable_files_are_reported_with_file_and_offset(tmp_path):
    sparse = str(tmp_path / "sparse.params")
    mx.nd.save(sparse, {"c": mx.nd.array([[0, 1], [2, 0]]).tostype("csr")})
    with pytest.raises(ParamsFormatError, match=r"sparse\.params at byte 24: storage type 2 is sparse"):
        params_file.load(sparse)
    dense = str(tmp_path / "dense.params")
    mx.nd.save(dense, {"a": mx.nd.ones((4, 4))})
    with open(dense, "rb") as f:
        data = f.read()
    with pytest.raises(ParamsFormatError, match="file ends early"):
        params_file.parse(data[:60], "cut.params")
    with pytest.raises(ParamsFormatError, match="unexpected bytes"):
        params_file.parse(data + b"\0", "long.params")
    with pytest.raises(ParamsFormatError, match=r"other\.bin at byte 0: not an MXNet NDArray list"):
        params_file.parse(b"PK\3\4" + bytes(40), "other.bin")


def test_arrays_gluon_cannot_hold_are_refused_before_writing(tmp_path):
    path = tmp_path / "out.params"
    with pytest.raises(ParamsFormatError, match="'n': shape"):
        params_file.save(str(path), {"n": np.array(0, np.int64)})
    with pytest.raises(ParamsFormatError, match="'c': dtype complex64"):
        params_file.save(str(path), {"c": np.zeros(2, np.complex64)})
    assert not path.exists()
