"""Weights between each Gluon network and its PyTorch twin, checked on real MXNet (in a
child process) and real PyTorch: same logits both ways, ImageNet files as backbones."""
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from models import params_file
from models.torch_nets.build import create_torch_model
from models.torch_nets.weights import classifier_prefix, load_imagenet_backbone, read_state_dict
from models.weight_convert import WeightConversionError, from_torchvision_names, gluon_to_torch, torch_to_gluon
from twin_helpers import (BIG, BIG_MXNET, TINY, assert_same_outputs, images, random_values, run_gluon_side,
                          run_python)

CLASSES = 11


def twin_with(name, classes, state):
    model = create_torch_model(name, classes)
    model.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()})
    return model.eval()


def twin_outputs(model, x):
    with torch.no_grad():
        x = torch.from_numpy(x)
        return model(x).numpy(), model.forward_head(model.forward_features(x), pre_logits=True).numpy()


def numpy_state(model):
    return {key: value.numpy() for key, value in model.state_dict().items()}


def role(key, value):
    """The role of a state-dict entry for ``twin_helpers.random_values`` (None: left alone)."""
    if key.endswith("num_batches_tracked"):
        return None
    if key.endswith("running_var"):
        return "running_var"
    if key.endswith(("running_mean", ".bias")):
        return "shift"
    return "gamma" if value.dim() == 1 else "weight"


def randomize_twin(model, seed):
    """Random values everywhere (``twin_helpers.random_values``), statistics included."""
    rng = np.random.RandomState(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if role(key, value) is not None:
                value.copy_(torch.from_numpy(random_values(role(key, value), tuple(value.shape), rng)))
    return model.eval()


def round_trip(names, folder):
    """Gluon (random weights) -> twin -> Gluon, for every network in ``names``.

    Returns ``{name: (gluon outputs, twin logits, gluon outputs after the round trip)}``.
    """
    run_gluon_side([{"op": "export", "name": n, "classes": CLASSES, "seed": i, "params": "%s/%s.params" % (folder, n),
                     "out": "%s/%s.gluon.npz" % (folder, n)} for i, n in enumerate(names)], folder, "export")
    twin_logits = {}
    for name in names:
        gluon = np.load("%s/%s.gluon.npz" % (folder, name))
        model = twin_with(name, CLASSES, gluon_to_torch(name, params_file.load("%s/%s.params" % (folder, name))))
        twin_logits[name] = twin_outputs(model, gluon["x"])[0]
        params_file.save("%s/%s.back.params" % (folder, name), torch_to_gluon(name, numpy_state(model)))
        del model
    run_gluon_side([{"op": "load", "name": n, "classes": CLASSES, "params": "%s/%s.back.params" % (folder, n),
                     "x": "%s/%s.gluon.npz" % (folder, n), "out": "%s/%s.back.npz" % (folder, n)} for n in names],
                   folder, "load")
    return {n: (np.load("%s/%s.gluon.npz" % (folder, n)), twin_logits[n], np.load("%s/%s.back.npz" % (folder, n)))
            for n in names}


def check_round_trip(result):
    gluon, twin_logits, back = result
    assert_same_outputs(twin_logits, gluon["logits"])
    np.testing.assert_array_equal(back["logits"], gluon["logits"])


@pytest.fixture(scope="module")
def tiny_round_trip(tmp_path_factory):
    return round_trip(TINY, tmp_path_factory.mktemp("round_trip"))


@pytest.mark.parametrize("name", TINY)
def test_gluon_weights_give_the_same_logits_in_the_twin_and_back(name, tiny_round_trip):
    check_round_trip(tiny_round_trip[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG + BIG_MXNET)
def test_full_size_gluon_weights_give_the_same_logits_in_the_twin_and_back(name, tmp_path):
    check_round_trip(round_trip([name], tmp_path)[name])


def imagenet_backbone_into_gluon(names, folder, legacy_torchvision=False):
    """A random 1000-class twin saved as timm saves its ImageNet files (safetensors; or
    torchvision's legacy DenseNet names in a .pth), converted by the command line in a
    process without MXNet or PyTorch (for safetensors), loaded by ``models.mxnet_nets.get_model(...,
    pretrained=)`` in MXNet. Returns ``{name: (twin features, Gluon features)}``."""
    x = images(0)
    np.savez("%s/x.npz" % folder, x=x)
    expected = {}
    for seed, name in enumerate(names):
        model = randomize_twin(create_torch_model(name, 1000), seed)
        expected[name] = twin_outputs(model, x)[1]
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        source = "%s/%s.%s" % (folder, name, "pth" if legacy_torchvision else "safetensors")
        if legacy_torchvision:
            torch.save(to_legacy_torchvision_names(state), source)
        else:
            save_file(state, source)
        convert = ["-c", "import sys; from models.torch_nets.convert_weights import main; main(sys.argv[1:]); "
                   "assert 'mxnet' not in sys.modules and ('torch' not in sys.modules or sys.argv[1].endswith('.pth'))",
                   source, "%s/%s.imagenet.params" % (folder, name), "--network", name]
        run_python(convert)
    run_gluon_side([{"op": "backbone", "name": n, "classes": CLASSES, "params": "%s/%s.imagenet.params" % (folder, n),
                     "x": "%s/x.npz" % folder, "out": "%s/%s.backbone.npz" % (folder, n)} for n in names],
                   folder, "backbone")
    return {n: (expected[n], np.load("%s/%s.backbone.npz" % (folder, n))["features"]) for n in names}


def to_legacy_torchvision_names(state):
    """As in torchvision's DenseNet files: ``denselayer1.norm.1`` for ``denselayer1.norm1``,
    no batch-norm counters (saved before PyTorch 0.4.1)."""
    renamed = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        for layer in ("norm1", "conv1", "norm2", "conv2"):
            key = key.replace(".%s." % layer, ".%s.%s." % (layer[:-1], layer[-1]))
        renamed[key] = value
    return renamed


IMAGENET_TINY = ["dpn_tiny", "resnext_tiny", "se_resnext_tiny", "densenet_tiny"]


def test_timm_format_backbones_give_gluon_the_twins_features(tmp_path):
    for name, (twin, gluon) in imagenet_backbone_into_gluon(IMAGENET_TINY, tmp_path).items():
        assert_same_outputs(gluon, twin)


def test_torchvision_densenet_file_gives_gluon_the_twins_features(tmp_path):
    (twin, gluon), = imagenet_backbone_into_gluon(["densenet_tiny"], tmp_path, legacy_torchvision=True).values()
    assert_same_outputs(gluon, twin)


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_full_size_timm_backbones_give_gluon_the_twins_features(name, tmp_path):
    (twin, gluon), = imagenet_backbone_into_gluon([name], tmp_path).values()
    assert_same_outputs(gluon, twin)


@pytest.mark.parametrize("name", IMAGENET_TINY)
def test_imagenet_file_loads_into_the_twin_as_backbone(name, tmp_path):
    source = randomize_twin(create_torch_model(name, 1000), 1)
    path = str(tmp_path / "imagenet.safetensors")
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, path)
    model = create_torch_model(name, CLASSES)
    classifier = {key: value.clone() for key, value in model.get_classifier().state_dict().items()}
    report = load_imagenet_backbone(model, path)
    model.eval()
    x = images(0)
    assert_same_outputs(twin_outputs(model, x)[1], twin_outputs(source, x)[1], rel=1e-6)
    assert all(torch.equal(model.get_classifier().state_dict()[k], v) for k, v in classifier.items())
    head = classifier_prefix(model)
    assert report.classifier == sorted(k for k in source.state_dict() if k.startswith(head))
    assert report.loaded == sorted(k for k in source.state_dict() if not k.startswith(head))


def test_torchvision_densenet_file_loads_into_the_twin(tmp_path):
    source = randomize_twin(create_torch_model("densenet_tiny", 1000), 2)
    path = str(tmp_path / "densenet.pth")
    torch.save(to_legacy_torchvision_names(source.state_dict()), path)
    model = create_torch_model("densenet_tiny", CLASSES)
    load_imagenet_backbone(model, path)
    x = images(0)
    assert_same_outputs(twin_outputs(model.eval(), x)[1], twin_outputs(source, x)[1], rel=1e-6)


def test_imagenet_file_of_another_network_is_refused(tmp_path):
    state = create_torch_model("resnext_tiny", 1000).state_dict()
    with pytest.raises(WeightConversionError, match="missing"):
        load_imagenet_backbone(create_torch_model("se_resnext_tiny", CLASSES), state)


def test_conversion_names_what_does_not_fit():
    state = numpy_state(create_torch_model("resnext_tiny", CLASSES))
    params = torch_to_gluon("resnext_tiny", state)
    with pytest.raises(WeightConversionError, match=r"se_resnext_tiny.*missing.*features\.4\.0\.se\.0\.bias"):
        gluon_to_torch("se_resnext_tiny", params)
    with pytest.raises(WeightConversionError, match=r"1 unexpected \[extra\]"):
        gluon_to_torch("resnext_tiny", dict(params, extra=np.zeros(1)))
    del state["fc.bias"]
    with pytest.raises(WeightConversionError, match=r"1 missing \[fc\.bias\]"):
        torch_to_gluon("resnext_tiny", state)


def test_counters_and_fixed_gammas_are_written_for_the_other_side():
    params = torch_to_gluon("resnext_tiny_mxnet", numpy_state(create_torch_model("resnext_tiny_mxnet", CLASSES)))
    assert not any("num_batches_tracked" in key for key in params)
    params["features.0.gamma"] = np.full(3, 7.0, np.float32)  # MXNet's fix_gamma ignores it
    state = gluon_to_torch("resnext_tiny_mxnet", params)
    np.testing.assert_array_equal(state["conv1.bn_data.weight"], np.ones(3, np.float32))
    assert state["bn1.num_batches_tracked"].dtype == np.int64 and state["bn1.num_batches_tracked"].shape == ()


def test_dpn_classifier_is_a_1x1_convolution_in_the_twin():
    state = numpy_state(create_torch_model("dpn_tiny", CLASSES))
    params = torch_to_gluon("dpn_tiny", state)
    assert params["output.weight"].shape == state["classifier.weight"].shape[:2]
    np.testing.assert_array_equal(gluon_to_torch("dpn_tiny", params)["classifier.weight"], state["classifier.weight"])


def test_torchvision_legacy_names_are_renamed_and_others_kept():
    state = {"features.denseblock1.denselayer2.norm.1.running_var": 1, "features.norm5.weight": 2,
             "features.transition1.conv.weight": 3}
    assert from_torchvision_names(state) == {"features.denseblock1.denselayer2.norm1.running_var": 1,
                                             "features.norm5.weight": 2, "features.transition1.conv.weight": 3}


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_command_line_turns_a_gluon_checkpoint_into_a_state_dict_of_the_twin(tmp_path, suffix):
    model = randomize_twin(create_torch_model("se_resnext_tiny", CLASSES), 3)
    params_file.save(str(tmp_path / "epoch-0001.params"), torch_to_gluon("se_resnext_tiny", numpy_state(model)))
    target = str(tmp_path / ("twin." + suffix))
    run_python(["-m", "models.torch_nets.convert_weights", str(tmp_path / "epoch-0001.params"), target,
                "--network", "se_resnext_tiny"])
    copy = create_torch_model("se_resnext_tiny", CLASSES)
    copy.load_state_dict(read_state_dict(target))
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in copy.state_dict().items()
               if not key.endswith("num_batches_tracked"))


def test_command_line_refuses_two_files_of_one_side(tmp_path):
    with pytest.raises(AssertionError, match="convert a .params file"):
        run_python(["-m", "models.torch_nets.convert_weights", str(tmp_path / "a.params"), str(tmp_path / "b.params"),
                    "--network", "dpn_tiny"])
    assert not os.listdir(tmp_path)
