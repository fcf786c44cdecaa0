"""models.configs (framework-free, read by the PyTorch side) agrees with the MXNet side."""
import dataclasses
import subprocess
import sys

import pytest

import models
from models import configs
from models.dpn import DPN_CONFIGS
from models.gluoncv_nets import DENSENET_CONFIGS, RESNEXT_CONFIGS


def test_same_networks_as_the_registry():
    assert configs.network_names() == models.list_models()


@pytest.mark.parametrize("gluon, neutral", [(DPN_CONFIGS, configs.DPN_CONFIGS),
                                            (RESNEXT_CONFIGS, configs.RESNEXT_CONFIGS),
                                            (DENSENET_CONFIGS, configs.DENSENET_CONFIGS)])
def test_same_configurations_field_by_field(gluon, neutral):
    assert {name: dataclasses.asdict(c) for name, c in gluon.items()} == \
           {name: dataclasses.asdict(c) for name, c in neutral.items()}
    for name, config in neutral.items():
        assert config.feature_channels() == models.get_spec(name).feature_channels


def test_families_and_unknown_names():
    assert configs.architecture("se_resnext101_64x4d") == ("resnext", configs.RESNEXT_CONFIGS["se_resnext101_64x4d"])
    with pytest.raises(KeyError, match="dpn92"):
        configs.architecture("dpn93")


def test_framework_free_modules_load_no_framework():
    code = ("import sys, models, models.configs, models.params_file, models.weight_convert, models.convert_weights; "
            "assert not {'mxnet', 'torch', 'gluoncv'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
