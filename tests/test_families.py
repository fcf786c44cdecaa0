"""models.families: the architectures as plain data, read by every framework's side."""
import json

import pytest

from models import families
from models.families import ArchitectureError, architecture, config_overrides
from models.families.resnext import RESNEXT_CONFIGS, resnext_widths


def test_families_and_unknown_names():
    assert families.architecture("se_resnext101_64x4d") == ("resnext", RESNEXT_CONFIGS["se_resnext101_64x4d"])
    with pytest.raises(KeyError, match="dpn92"):
        families.architecture("dpn93")


def test_overrides_round_trip_through_json():
    _, config = architecture("resnext101_64x4d_mxnet", {"bottleneck_width": 2})
    recorded = json.loads(json.dumps(config_overrides("resnext101_64x4d_mxnet", config)))
    assert recorded == {"bottleneck_width": 2}
    assert architecture("resnext101_64x4d_mxnet", recorded)[1] == config
    assert config_overrides("dpn92", architecture("dpn92")[1]) == {}
    with pytest.raises(ArchitectureError, match="ResNeXtConfig has no field width"):
        architecture("resnext_tiny", {"width": 3})


def mxnet_resnext_shapes(stem, stages):
    """Weight shapes of MXNet's resnext.py layers: stages of (group width, groups, output)."""
    shapes = {"conv0": (stem, 3, 7, 7)}
    for s, (width, groups, out) in enumerate(stages, 1):
        shapes["stage%d_unit1_conv2" % s] = (width, width // groups, 3, 3)
        shapes["stage%d_unit1_conv3" % s] = (out, width, 1, 1)
    return shapes


def test_resnext_widths_read_from_weight_shapes():
    # resnext.py with num_group=64: the bottleneck is half the output, 64 groups of 2.
    shapes = mxnet_resnext_shapes(64, [(128, 64, 256), (256, 64, 512), (512, 64, 1024), (1024, 64, 2048)])
    assert resnext_widths(shapes, 4) == dict(stem_channels=64, base_channels=64, cardinality=64, bottleneck_width=2)
    # The registered widths read back as themselves.
    _, config = architecture("resnext_tiny_mxnet")
    stages = [(w, g, 4 * p) for (w, g), p in zip(config.stage_bottlenecks(), config.stage_channels())]
    widths = resnext_widths(mxnet_resnext_shapes(config.stem_channels, stages), 4)
    assert architecture("resnext_tiny_mxnet", widths)[1] == config
    # A stage no single cardinality x width gives is refused, naming what was found.
    odd = mxnet_resnext_shapes(64, [(128, 64, 256), (384, 64, 512), (512, 64, 1024), (1024, 64, 2048)])
    with pytest.raises(ArchitectureError, match=r"\(384, 64\)"):
        resnext_widths(odd, 4)
