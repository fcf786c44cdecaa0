"""Tests of the models package: registry, architectures, weight import, export."""
import json
import os

import cv2
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import models
from models.__main__ import main as models_cli
from models.mxnet_nets.gluoncv_import import import_gluoncv
from models.mxnet_nets.build import build_network, feature_layer, infer_parameter_shapes
from models.mxnet_nets.weights import structural_names, symbol_name_table
from models import mxnet_nets
from published_symbols import AUTHORS_DPN, authors_dpn, executor_output, mxnet_resnext, random_checkpoint

model_zoo = import_gluoncv().model_zoo

TINY = ["dpn_tiny", "resnext_tiny", "se_resnext_tiny", "densenet_tiny", "resnext_tiny_mxnet"]
BIG = ["dpn68", "dpn92", "dpn98", "dpn107", "dpn131", "resnext101_32x4d", "resnext101_64x4d",
       "se_resnext101_32x4d", "se_resnext101_64x4d", "densenet161", "densenet169", "resnext101_32x4d_mxnet",
       "resnext101_64x4d_mxnet", "se_resnext101_64x4d_mxnet"]


def randomize(net, seed=0):
    """Give every parameter distinct random values (fresh nets have many 0/1 constants)."""
    rng = np.random.RandomState(seed)
    for param in net.collect_params().values():
        if param.name.endswith("running_var"):
            values = rng.uniform(0.5, 1.5, param.shape)
        else:
            values = rng.normal(0, 0.05, param.shape)
        param.set_data(mx.nd.array(values, dtype=param.dtype))


def backbone_arrays(net):
    return {path: param.data().asnumpy() for path, param in structural_names(net).items()
            if path.startswith("features.")}


def images(n=2, size=180, seed=0, width=None):
    return mx.nd.array(np.random.RandomState(seed).uniform(0, 255, (n, 3, size, width or size)))


# --- registry and specs ---------------------------------------------------------------

def test_registry_has_every_reference_network_and_tiny_variants():
    names = models.list_models()
    assert names == sorted(names)
    assert set(BIG + TINY) <= set(names)


def test_spec_defaults_to_raw_pixels_with_imagenet_alternative():
    spec = models.get_spec("dpn92")
    assert isinstance(spec, models.ModelSpec)
    assert (spec.family, spec.input_size, spec.normalization) == ("dpn", 180, "raw")
    assert spec.mean == (0.0, 0.0, 0.0) and spec.scale == 1.0
    assert spec.imagenet_mean == (124.0, 117.0, 104.0) and spec.imagenet_scale == 0.0167
    imagenet = models.get_spec("dpn92", normalization="imagenet")
    assert (imagenet.mean, imagenet.scale) == ((124.0, 117.0, 104.0), 0.0167)
    resnext = models.get_spec("resnext101_64x4d", normalization="imagenet")
    assert resnext.mean == pytest.approx((123.675, 116.28, 103.53))
    assert 1 / (255 * 0.229) < resnext.scale < 1 / (255 * 0.224)
    with pytest.raises(ValueError, match="normalization"):
        models.get_spec("dpn92", normalization="bgr")
    with pytest.raises(KeyError, match="dpn92"):
        models.get_spec("dpn93")
    with pytest.raises(Exception):
        spec.scale = 2.0  # frozen


@pytest.mark.parametrize("name", [n for n in BIG if models.get_spec(n).published_params])
def test_parameter_counts_match_published(name):
    published = models.get_spec(name).published_params
    assert mxnet_nets.count_parameters(name, classes=1000) == pytest.approx(published, rel=0.01)


def test_parameter_count_grows_with_the_classifier_only():
    diff = mxnet_nets.count_parameters("dpn92", classes=5270) - mxnet_nets.count_parameters("dpn92", classes=1000)
    assert diff == 4270 * (2688 + 1)


# --- architectures ----------------------------------------------------------------------

@pytest.mark.parametrize("name", TINY)
def test_tiny_network_runs_at_180_with_5270_classes(name):
    net = mxnet_nets.get_model(name, classes=5270)
    spec = models.get_spec(name)
    x = images()
    assert net.features(x).shape == (2, spec.feature_channels)
    imperative = net(x).asnumpy()
    assert imperative.shape == (2, 5270)
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), imperative, rtol=1e-4, atol=1e-4)
    assert isinstance(net.output, gluon.nn.Dense)


@pytest.mark.parametrize("name", ["dpn_tiny", "densenet_tiny", "se_resnext_tiny"])
def test_any_input_size_works_thanks_to_global_pooling(name):
    net = mxnet_nets.get_model(name, classes=3)
    net.hybridize()
    for size, width in ((160, None), (224, None), (180, 240)):
        assert net(images(1, size, width=width)).shape == (1, 3)


def _shapes_by_path(net):
    infer_parameter_shapes(net, image_size=224)  # GluonCV's DenseNet needs 224
    return {path: param.shape for path, param in structural_names(net).items()}


@pytest.mark.parametrize("name", ["resnext101_32x4d", "se_resnext101_64x4d", "densenet161"])
def test_gluoncv_networks_keep_gluoncv_layout(name):
    """Same structural names and shapes as GluonCV's own network: its .params files fit."""
    ours = _shapes_by_path(build_network(name, classes=1000))
    theirs = _shapes_by_path(model_zoo.get_model(name, pretrained=False))
    assert ours == theirs


def test_dpn_parameter_names_follow_the_published_symbols():
    net = build_network("dpn92", classes=1000)
    table = symbol_name_table(net)
    params = dict(structural_names(net))
    shape = {name: params[path].shape for name, path in table.items()}
    # Stem, projections ('proj' in the first stage, stride-2 'down' later), the three
    # units of each block, the final BN and the classifier, as named in cypw/DPNs except
    # the units' batch norms (there <unit>__bn__bn_*, see test_dpn_authors_checkpoint_loads).
    assert shape["conv1_x_1__conv_weight"] == (64, 3, 7, 7)
    assert shape["conv1_x_1__relu-sp__bn_gamma"] == (64,)
    assert shape["conv2_x__1_c1x1-w(s/1)__conv_weight"] == (256 + 2 * 16, 64, 1, 1)
    assert shape["conv2_x__1_c1x1-a__conv_weight"] == (96, 64, 1, 1)
    assert shape["conv2_x__1_c3x3-b__conv_weight"] == (96, 96 // 32, 3, 3)
    assert shape["conv2_x__1_c1x1-c__conv_weight"] == (256 + 16, 96, 1, 1)
    assert shape["conv2_x__2_c1x1-a__bn_running_mean"] == (256 + 3 * 16,)
    assert shape["conv3_x__1_c1x1-w(s/2)__bn_beta"] == (256 + 5 * 16,)
    assert shape["conv4_x__20_c1x1-c__conv_weight"] == (1024 + 24, 384, 1, 1)
    assert shape["conv5_x_x__relu-sp__bn_running_var"] == (2688,)
    assert shape["fc6_weight"] == (1000, 2688) and shape["fc6_bias"] == (1000,)
    assert not any(name.startswith("conv2_x__2_c1x1-w") for name in table)
    convs = [name for name in table if name.endswith("__conv_weight")]
    assert len(convs) == 1 + 3 * (3 + 4 + 20 + 3) + 4  # stem, 3 per block, 4 projections


# --- weight import ------------------------------------------------------------------------

@pytest.fixture
def exported(tmp_path):
    """A randomised tiny network exported as a symbolic checkpoint: (net, params file)."""
    def export(name, classes=10):
        net = mxnet_nets.get_model(name, classes=classes)
        randomize(net)
        _, params_file = mxnet_nets.export_symbolic(net, str(tmp_path / name))
        return net, params_file
    return export


@pytest.mark.parametrize("name", TINY)
def test_symbolic_checkpoint_round_trip_with_a_new_class_count(name, exported, tmp_path):
    source, params_file = exported(name, classes=10)
    assert sorted(os.listdir(tmp_path)) == ["%s-0000.params" % name, "%s-symbol.json" % name]
    assert all(key.startswith(("arg:", "aux:")) for key in mx.nd.load(params_file))
    target = mxnet_nets.get_model(name, classes=7, pretrained=params_file)
    expected, loaded = backbone_arrays(source), backbone_arrays(target)
    assert loaded.keys() == expected.keys()
    for path in expected:
        np.testing.assert_array_equal(loaded[path], expected[path], err_msg=path)
    assert target.output.weight.shape == (7, models.get_spec(name).feature_channels)
    # (prefix, epoch) addresses the same checkpoint.
    again = mxnet_nets.get_model(name, classes=7, pretrained=(str(tmp_path / name), 0))
    np.testing.assert_array_equal(again.features(images()).asnumpy(), target.features(images()).asnumpy())


def test_gluon_params_round_trip(tmp_path):
    source = mxnet_nets.get_model("densenet_tiny", classes=10)
    randomize(source)
    path = str(tmp_path / "densenet_tiny.params")
    source.save_parameters(path)
    target = mxnet_nets.get_model("densenet_tiny", classes=3)
    report = mxnet_nets.load_backbone(target, path)
    assert (report.source_format, report.naming) == ("gluon", "structural")
    assert report.classifier == ["output.bias", "output.weight"]
    assert not report.missing and not report.unexpected
    assert report.loaded == sorted(backbone_arrays(source))
    for path_, array in backbone_arrays(source).items():
        np.testing.assert_array_equal(backbone_arrays(target)[path_], array)


# --- the published checkpoints, from graphs written after their published definitions ----

def assert_same_features(ours, theirs):
    """Equal to 1e-5 relative to the features' scale (random deep nets reach large values)."""
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())


def check_published_checkpoint(name, symbol, symbol_feature_layer, prefix):
    """Random weights saved as a symbolic checkpoint of `symbol` load into network `name`,
    every backbone parameter used, the classifier dropped, and give the executor's features."""
    args, auxs = random_checkpoint(symbol, prefix)
    x = images(1, size=64, seed=3)
    net = mxnet_nets.get_model(name, classes=7, pretrained=(prefix, 0))
    assert_same_features(net.features(x).asnumpy(), executor_output(symbol, symbol_feature_layer, args, auxs, x))
    report = mxnet_nets.load_backbone(mxnet_nets.get_model(name, classes=7), prefix + "-0000.params")
    assert (report.source_format, report.naming) == ("symbolic", "published")
    assert not report.missing and not report.unexpected
    assert report.classifier == sorted(n for n in args if n.startswith(("fc6_", "fc1_")))
    return net, report


@pytest.mark.parametrize("name", ["dpn92", pytest.param("dpn98", marks=pytest.mark.slow),
                                  pytest.param("dpn107", marks=pytest.mark.slow),
                                  pytest.param("dpn131", marks=pytest.mark.slow)])
def test_dpn_authors_checkpoint_loads(name, tmp_path):
    symbol = authors_dpn(*AUTHORS_DPN[name])
    names = set(symbol.list_arguments() + symbol.list_auxiliary_states())
    assert {"conv2_x__1_c1x1-a__bn__bn_gamma", "conv3_x__1_c1x1-w(s/2)__bn__bn_moving_var",
            "conv1_x_1__relu-sp__bn_beta", "conv5_x_x__relu-sp__bn_moving_mean", "fc6_weight"} <= names
    _, report = check_published_checkpoint(name, symbol, "flatten_output", str(tmp_path / name))
    assert len(report.loaded) == len(names) - 4        # all but data, softmax_label and fc6


@pytest.mark.parametrize("name, units, filter_list, groups, width_factor, stem_stride", [
    ("resnext_tiny_mxnet", (1, 1, 1, 1), (16, 64, 128, 256, 512), 4, 1 / 16, 4),
    # ResNeXt-101 32x4d as resnext.py defines it (imagenet1k-resnext-101).
    pytest.param("resnext101_32x4d_mxnet", (3, 4, 23, 3), (64, 256, 512, 1024, 2048), 32, 0.5, 2,
                 marks=pytest.mark.slow),
    # The 64x4d model-zoo file: 64 groups of 4 channels in the first stage.
    pytest.param("resnext101_64x4d_mxnet", (3, 4, 23, 3), (64, 256, 512, 1024, 2048), 64, 1.0, 2,
                 marks=pytest.mark.slow),
])
def test_mxnet_model_zoo_resnext_checkpoint_loads(name, units, filter_list, groups, width_factor, stem_stride,
                                                  tmp_path):
    symbol = mxnet_resnext(units, filter_list, groups, width_factor, stem_stride)
    net, _ = check_published_checkpoint(name, symbol, "flatten0_output", str(tmp_path / name))
    assert {bn._kwargs["eps"] for bn in batch_norms(net)} == {2e-5}  # pylint: disable=protected-access
    # The input batch norm's gamma is fixed (never read): a file without it loads as well.
    arrays = mx.nd.load(str(tmp_path / name) + "-0000.params")
    del arrays["arg:bn_data_gamma"]
    without_gamma = str(tmp_path / "no-gamma.params")
    mx.nd.save(without_gamma, arrays)
    again = mxnet_nets.get_model(name, classes=7, pretrained=without_gamma)
    x = images(1, size=64)
    np.testing.assert_array_equal(again.features(x).asnumpy(), net.features(x).asnumpy())


@pytest.mark.parametrize("name, units, filter_list, groups, stem_stride, widths", [
    # resnext.py's bottleneck is half the unit's output: 32 wide in 4 groups where the
    # registered tiny network has 4.
    ("resnext_tiny_mxnet", (1, 1, 1, 1), (16, 64, 128, 256, 512), 4, 4, dict(bottleneck_width=32)),
    # Another stem and unit widths than the name's, all read from the file.
    ("resnext_tiny_mxnet", (1, 1, 1, 1), (24, 32, 64, 128, 256), 8, 4,
     dict(stem_channels=24, base_channels=8, cardinality=8, bottleneck_width=16)),
    # resnext.py with num_group=64 (the "64x4d" name): 64 groups of 2 channels, 128 wide.
    pytest.param("resnext101_64x4d_mxnet", (3, 4, 23, 3), (64, 256, 512, 1024, 2048), 64, 2,
                 dict(bottleneck_width=2), marks=pytest.mark.slow),
])
def test_mxnet_model_zoo_resnext_widths_come_from_the_file(name, units, filter_list, groups, stem_stride, widths,
                                                           tmp_path):
    prefix = str(tmp_path / name)
    symbol = mxnet_resnext(units, filter_list, groups, 0.5, stem_stride)
    args, auxs = random_checkpoint(symbol, prefix)
    x = images(1, size=64, seed=3)
    net = mxnet_nets.get_model(name, classes=7, pretrained=(prefix, 0))
    assert net.config_overrides == widths        # the fields where the file differs from the name
    assert_same_features(net.features(x).asnumpy(), executor_output(symbol, "flatten0_output", args, auxs, x))
    # A run records the overrides (JSON) and rebuilds the same network from them.
    saved = str(tmp_path / "epoch-0001.params")
    net.save_parameters(saved)
    rebuilt = mxnet_nets.get_model(name, classes=7, config_overrides=json.loads(json.dumps(net.config_overrides)))
    rebuilt.load_parameters(saved)
    np.testing.assert_array_equal(rebuilt(x).asnumpy(), net(x).asnumpy())
    # A child run seeded from that run's checkpoint (structural names) takes its widths too.
    assert mxnet_nets.get_model(name, classes=3, pretrained=saved).config_overrides == widths
    assert mxnet_nets.get_model(name, classes=3).config_overrides == {}


def test_se_resnext_takes_the_widths_of_the_resnext_file_it_starts_from(tmp_path):
    prefix = str(tmp_path / "zoo")
    random_checkpoint(mxnet_resnext((1, 1, 1, 1), (16, 64, 128, 256, 512), 4, 0.5, 4), prefix)
    resnext = mxnet_nets.get_model("resnext_tiny_mxnet", classes=7, pretrained=(prefix, 0))
    se = mxnet_nets.get_model("se_resnext_tiny_mxnet", classes=7, from_model=(prefix, 0))
    assert se.config_overrides == resnext.config_overrides == dict(bottleneck_width=32)
    shared, se_arrays = backbone_arrays(resnext), backbone_arrays(se)
    for path_, array in shared.items():
        np.testing.assert_array_equal(se_arrays[path_], array, err_msg=path_)


def batch_norms(net):
    found = []
    net.apply(lambda block: found.append(block) if isinstance(block, gluon.nn.BatchNorm) else None)
    return found


def test_mxnet_model_zoo_resnext_seeds_se_resnext_but_not_gluoncv_form(tmp_path):
    prefix = str(tmp_path / "zoo")
    random_checkpoint(mxnet_resnext((1, 1, 1, 1), (16, 64, 128, 256, 512), 4, 1 / 16, 4), prefix)
    resnext = mxnet_nets.get_model("resnext_tiny_mxnet", classes=7, pretrained=(prefix, 0))
    se = mxnet_nets.get_model("se_resnext_tiny_mxnet", classes=7, from_model=(prefix, 0))
    shared, se_arrays = backbone_arrays(resnext), backbone_arrays(se)
    for path_, array in shared.items():
        np.testing.assert_array_equal(se_arrays[path_], array, err_msg=path_)
    report = mxnet_nets.load_backbone(mxnet_nets.get_model("se_resnext_tiny_mxnet", classes=7), prefix + "-0000.params",
                                  allow_missing=True)
    assert report.missing == sorted(set(se_arrays) - set(shared)) and not report.unexpected
    assert report.missing and all(".se." in p for p in report.missing)
    # GluonCV's form has neither the input batch norm nor eps 2e-5: refused.
    with pytest.raises(mxnet_nets.WeightImportError, match="bn_data_beta"):
        mxnet_nets.get_model("resnext_tiny", classes=7, pretrained=(prefix, 0))


def test_shape_mismatch_fails_clearly(exported, tmp_path):
    _, params_file = exported("dpn_tiny")
    arrays = mx.nd.load(params_file)
    key = "arg:dpn_tiny_conv2_x__1_c1x1-a__conv_weight"
    arrays[key] = mx.nd.zeros((3, 3, 1, 1))
    bad = str(tmp_path / "bad.params")
    mx.nd.save(bad, arrays)
    with pytest.raises(mxnet_nets.WeightShapeError, match=r"c1x1_a\.conv\.weight.*\(3, 3, 1, 1\)"):
        mxnet_nets.get_model("dpn_tiny", classes=5, pretrained=bad)


def test_missing_and_unexpected_parameters_are_reported(exported, tmp_path):
    _, params_file = exported("resnext_tiny")
    arrays = mx.nd.load(params_file)
    del arrays["arg:resnext_tiny_stage2_conv1_weight"]
    arrays["arg:resnext_tiny_extra_weight"] = mx.nd.zeros((2,))
    edited = str(tmp_path / "edited.params")
    mx.nd.save(edited, arrays)
    with pytest.raises(mxnet_nets.WeightImportError, match="features.5.0.body.3.weight"):
        mxnet_nets.get_model("resnext_tiny", classes=5, pretrained=edited)
    report = mxnet_nets.load_backbone(mxnet_nets.get_model("resnext_tiny", classes=5), edited,
                                  allow_missing=True, allow_unexpected=True)
    assert report.missing == ["features.5.0.body.3.weight"]
    assert report.unexpected == ["resnext_tiny_extra_weight"]


def test_weights_of_another_family_are_refused(exported):
    _, params_file = exported("dpn_tiny")
    with pytest.raises(mxnet_nets.WeightImportError, match="shares no backbone parameter"):
        mxnet_nets.get_model("resnext_tiny", classes=5, from_model=params_file)
    with pytest.raises(FileNotFoundError):
        mxnet_nets.get_model("dpn_tiny", pretrained=params_file + ".missing")
    with pytest.raises(ValueError, match="either"):
        mxnet_nets.get_model("dpn_tiny", pretrained=params_file, from_model=params_file)


@pytest.mark.parametrize("form", ["gluon", "symbolic"])
def test_se_resnext_starts_from_resnext_weights(form, tmp_path):
    resnext = mxnet_nets.get_model("resnext_tiny", classes=10)
    randomize(resnext)
    if form == "gluon":
        path = str(tmp_path / "resnext.params")
        resnext.save_parameters(path)
    else:
        _, path = mxnet_nets.export_symbolic(resnext, str(tmp_path / "resnext"))
    se = mxnet_nets.get_model("se_resnext_tiny", classes=4, from_model=path)
    shared, se_arrays = backbone_arrays(resnext), backbone_arrays(se)
    for path_, array in shared.items():
        np.testing.assert_array_equal(se_arrays[path_], array, err_msg=path_)
    new_layers = set(se_arrays) - set(shared)
    assert new_layers and all(".se." in path_ for path_ in new_layers)
    report = mxnet_nets.load_backbone(mxnet_nets.get_model("se_resnext_tiny", classes=4), path,
                                  allow_missing=True, allow_unexpected=True)
    assert set(report.missing) == new_layers and not report.unexpected


# --- export, contexts, dtypes, dropout ----------------------------------------------

@pytest.mark.parametrize("name", ["dpn_tiny", "se_resnext_tiny", "densenet_tiny"])
def test_export_and_import_give_identical_outputs(name, tmp_path):
    net = mxnet_nets.get_model(name, classes=6)
    randomize(net)
    prefix = str(tmp_path / "deploy" / name)
    symbol_file, _ = mxnet_nets.export_symbolic(net, prefix, epoch=3)
    x = images(3)
    deployed = mxnet_nets.import_symbolic(prefix, epoch=3)
    np.testing.assert_allclose(deployed(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)
    # The feature layer is the cut point inside the exported symbol.
    internals = mx.sym.load(symbol_file).get_internals()
    feature_block = gluon.SymbolBlock(internals[feature_layer(name)], mx.sym.var("data"),
                                      params=deployed.collect_params())
    np.testing.assert_allclose(feature_block(x).asnumpy(), net.features(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_multi_context_initialisation():
    contexts = [mx.cpu(0), mx.cpu(1)]
    net = mxnet_nets.get_model("dpn_tiny", classes=5, ctx=contexts)
    for param in net.collect_params().values():
        assert param.list_ctx() == contexts
        np.testing.assert_array_equal(param.data(contexts[0]).asnumpy(), param.data(contexts[1]).asnumpy())
    outputs = [net(images().as_in_context(c)).asnumpy() for c in contexts]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5)


@pytest.mark.parametrize("name", ["dpn_tiny", "se_resnext_tiny", "densenet_tiny"])
def test_float16_cast(name):
    """CPU MXNet has no float16 GEMM: check the cast parameters and the graph's types."""
    net = mxnet_nets.get_model(name, classes=5)
    net.cast("float16")
    dtypes = {np.dtype(param.dtype) for path, param in structural_names(net).items() if "weight" in path}
    assert dtypes == {np.dtype(np.float16)}
    assert {np.dtype(p.dtype) for p in net.collect_params(".*gamma|.*running_var").values()} == {np.dtype(np.float32)}
    fresh = build_network(name, classes=5)
    fresh.cast("float16")
    _, out_types, _ = fresh(mx.sym.var("data")).infer_type(data="float16")
    assert out_types == [np.float16]


def test_dropout_between_features_and_classifier():
    net = mxnet_nets.get_model("dpn_tiny", classes=5, dropout=0.5)
    x = images(4)
    with autograd.record(train_mode=True):
        first, second = net(x).asnumpy(), net(x).asnumpy()
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(net(x).asnumpy(), net(x).asnumpy())
    assert mxnet_nets.get_model("dpn_tiny", classes=5).dropout is None
    with pytest.raises(ValueError, match="dropout"):
        mxnet_nets.get_model("dpn_tiny", dropout=1.0)


def test_listing_command(capsys):
    assert models_cli(["--list", "densenet_tiny", "dpn92"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| densenet_tiny |") and lines[3].startswith("| dpn92 | dpn | 37.67 | 37.7 |")
    assert "raw 0-255" in lines[3] and "mean (124, 117, 104) x 0.0167" in lines[3]
    with pytest.raises(SystemExit):
        models_cli(["--list", "resnet999"])


# --- slow: the big networks and learning --------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_big_network_runs_at_180_with_5270_classes(name):
    net = mxnet_nets.get_model(name, classes=5270)
    net.hybridize()
    assert net(images(1)).shape == (1, 5270)


@pytest.mark.slow
def test_se_resnext101_starts_from_resnext101(tmp_path):
    resnext = mxnet_nets.get_model("resnext101_64x4d", classes=5270)
    path = str(tmp_path / "m10.params")
    resnext.save_parameters(path)
    se = mxnet_nets.get_model("se_resnext101_64x4d", classes=5270, from_model=path)
    shared, se_arrays = backbone_arrays(resnext), backbone_arrays(se)
    for path_, array in shared.items():
        np.testing.assert_array_equal(se_arrays[path_], array, err_msg=path_)
    assert len(shared) > 500 and all(".se." in p for p in set(se_arrays) - set(shared))


COLORS = [(230, 40, 40), (40, 200, 40), (40, 60, 230), (230, 220, 40), (200, 40, 220)]


def synthetic_shapes(n, seed):
    """20 classes (5 colours x 4 shapes) at random positions and sizes on noisy grey."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 20, n)
    batch = np.empty((n, 3, 180, 180), np.float32)
    for i, label in enumerate(labels):
        img = np.full((180, 180, 3), rng.randint(60, 200), np.uint8)
        color = tuple(int(v) for v in np.clip(np.array(COLORS[label % 5]) + rng.randint(-25, 26, 3), 0, 255))
        cx, cy, r = rng.randint(50, 130), rng.randint(50, 130), rng.randint(25, 45)
        shape = label // 5
        if shape == 0:
            cv2.circle(img, (cx, cy), r, color, -1)
        elif shape == 1:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
        elif shape == 2:
            cv2.fillPoly(img, [np.array([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], np.int32)], color)
        else:
            cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), color, 12)
            cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), color, 12)
        batch[i] = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).transpose(2, 0, 1)
    return batch, labels


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpn_tiny", "densenet_tiny"])
def test_tiny_network_learns_a_20_class_task(name):
    train_x, train_y = synthetic_shapes(1280, seed=0)
    val_x, val_y = synthetic_shapes(400, seed=1)
    mx.random.seed(0)
    net = mxnet_nets.get_model(name, classes=20)
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 2e-3})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.RandomState(0)
    for _ in range(150):
        idx = rng.randint(0, len(train_x), 32)
        with autograd.record():
            loss = loss_fn(net(mx.nd.array(train_x[idx])), mx.nd.array(train_y[idx]))
        loss.backward()
        trainer.step(32)
    predicted = np.concatenate([net(mx.nd.array(val_x[i:i + 100])).argmax(axis=1).asnumpy()
                                for i in range(0, len(val_x), 100)])
    assert (predicted == val_y).mean() > 0.4  # chance: 0.05
