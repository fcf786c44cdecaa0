"""The PyTorch twins: one per registered network, timm's architectures, published sizes, and
fresh layers initialised as Gluon's."""
import re
import sys

import numpy as np
import pytest
import timm
import torch
from torch import nn

from models.families import network_names
from models.families.densenet import DenseNetConfig
from models.specs import get_spec, list_models
from models.torch_nets import densenet
from models.torch_nets.build import UnsupportedArchitectureError, create_torch_model
from models.weight_convert import parameter_pairs
from twin_helpers import BIG, BIG_MXNET, TINY, run_gluon_side

# Our name -> the timm model whose ImageNet files the twin must take as they are.
TIMM_NAMES = {"dpn68": "dpn68", "dpn92": "dpn92", "dpn98": "dpn98", "dpn107": "dpn107", "dpn131": "dpn131",
              "resnext101_32x4d": "resnext101_32x4d", "resnext101_64x4d": "resnext101_64x4d",
              "se_resnext101_32x4d": "seresnext101_32x4d", "se_resnext101_64x4d": "seresnext101_64x4d",
              "densenet161": "densenet161", "densenet169": "densenet169"}


def trainable_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def shapes(model):
    return {name: tuple(value.shape) for name, value in model.state_dict().items()}


def test_importing_the_twins_loads_no_mxnet():
    assert "torch" in sys.modules and "mxnet" not in sys.modules


def test_every_registered_network_has_a_twin():
    assert network_names() == list_models()
    assert set(TIMM_NAMES) == set(BIG)


@pytest.mark.parametrize("name", sorted(TIMM_NAMES))
def test_twin_of_a_published_network_is_timms_network(name):
    """Same state-dict names and shapes as timm's own: timm's ImageNet files fit as they are."""
    with torch.device("meta"):
        theirs = timm.create_model(TIMM_NAMES[name], pretrained=False)
    ours = create_torch_model(name, 1000, device="meta")
    assert type(ours) is type(theirs)
    assert shapes(ours) == shapes(theirs)
    assert ours.feature_info == theirs.feature_info


@pytest.mark.parametrize("name", BIG + BIG_MXNET)
def test_twin_has_the_published_parameter_count(name):
    published = get_spec(name).published_params
    if published is None:
        pytest.skip("no published parameter count for %s" % name)
    assert trainable_parameters(create_torch_model(name, 1000, device="meta")) == pytest.approx(published, rel=0.005)


@pytest.mark.parametrize("name", network_names())
def test_twin_and_gluon_network_have_the_same_parameters(name):
    """Every twin entry has its Gluon counterpart (weight_convert's table) and the feature
    width of the network's spec."""
    model = create_torch_model(name, 10, device="meta")
    assert set(model.state_dict()) == {p.torch for p in parameter_pairs(name)}
    assert model.num_features == get_spec(name).feature_channels


def test_twin_takes_the_architecture_a_run_records():
    """The widths a ``*_mxnet`` ResNeXt took from MXNet's resnext.py file (tests/test_models.py:
    a 32-wide first-stage bottleneck in 4 groups) build the same layers in the twin."""
    model = create_torch_model("resnext_tiny_mxnet", 7, device="meta", config_overrides={"bottleneck_width": 32})
    assert tuple(model.layer1[0].conv2.weight.shape) == (32, 8, 3, 3)
    assert set(model.state_dict()) == {p.torch for p in parameter_pairs("resnext_tiny_mxnet")}


def test_dpn_twin_ends_with_relu_like_the_authors_networks():
    final = create_torch_model("dpn_tiny", 10).features.conv5_bn_ac.bn
    assert isinstance(final.act, nn.ReLU) and final.eps == 1e-3


@pytest.mark.parametrize("name", TINY)
def test_tiny_twin_runs_at_180_with_5270_classes(name):
    model = create_torch_model(name, 5270).eval()
    x = torch.rand(2, 3, 180, 180) * 255
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        assert model(x).shape == (2, 5270)
    assert features.shape == (2, get_spec(name).feature_channels)


def test_mxnet_input_batch_norm_keeps_gamma_fixed():
    model = create_torch_model("resnext_tiny_mxnet", 10)
    assert not model.conv1.bn_data.weight.requires_grad
    assert model.conv1.bn_data.eps == model.bn1.eps == 2e-5
    assert create_torch_model("resnext_tiny", 10).bn1.eps == 1e-5


def test_dropout_sits_before_the_classifier_and_only_in_training():
    torch.manual_seed(0)
    model = create_torch_model("densenet_tiny", 10, dropout=0.5)
    x = torch.rand(2, 3, 96, 96) * 255
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    with pytest.raises(ValueError, match="dropout"):
        create_torch_model("densenet_tiny", 10, dropout=1.0)


def test_unknown_network_and_unsupported_configuration_are_reported():
    with pytest.raises(KeyError, match="dpn92"):
        create_torch_model("dpn93", 10)
    with pytest.raises(UnsupportedArchitectureError, match="growth"):
        densenet.build(DenseNetConfig(48, 16, (1, 1)), 10, 0.0, None)


# The layers a run starts fresh: DPN-92's new classifier, the squeeze-excitations of an
# SE-ResNeXt started from a ResNeXt run (the reference's M11 and M13).
FRESH_LAYERS = {"dpn92": r"^output\.", "se_resnext101_32x4d": r"\.se\."}


def test_fresh_layers_start_from_gluons_distribution(tmp_path):
    """Weights N(0, sqrt(2 / fan_in)) and biases 0 on both backends (the Gluon side's
    ``DEFAULT_INITIALIZER``): the classifier's std within 1% on each (0.0273 for DPN-92's 2688
    features; timm's gave 0.0111 and non-zero biases), every SE layer's within 10% (4096 to
    262144 values a layer) and all SE layers' together within 1%."""
    pairs = {network: {p.gluon: p.torch for p in parameter_pairs(network) if p.gluon and re.search(pattern, p.gluon)}
             for network, pattern in FRESH_LAYERS.items()}
    run_gluon_side([{"op": "init", "name": network, "classes": 1000, "params": sorted(pairs[network]),
                     "out": str(tmp_path / (network + ".npz"))} for network in FRESH_LAYERS], tmp_path, "init")
    for network in FRESH_LAYERS:
        torch.manual_seed(0)
        state = create_torch_model(network, 1000).state_dict()
        with np.load(tmp_path / (network + ".npz")) as gluon:
            sides = {"mxnet": {name: gluon[name] for name in gluon.files},
                     "torch": {name: state[pairs[network][name]].numpy() for name in pairs[network]}}
        for side, values in sides.items():
            weights = {name: array for name, array in values.items() if name.endswith(".weight")}
            assert all(not values[name].any() for name in values if name.endswith(".bias")), (network, side)
            normalised = {name: array.reshape(len(array), -1) * np.sqrt(array.reshape(len(array), -1).shape[1] / 2)
                          for name, array in weights.items()}
            stds = {name: array.std() for name, array in normalised.items()}
            assert all(abs(std - 1) < (0.01 if network == "dpn92" else 0.1) for std in stds.values()), (network, side,
                                                                                                        stds)
            pooled = np.concatenate([array.ravel() for array in normalised.values()])
            assert abs(pooled.std() - 1) < 0.01 and abs(pooled.mean()) < 0.01, (network, side, pooled.std())
