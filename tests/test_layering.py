"""The layers: which modules may import a framework, checked with the frameworks made unimportable.

MXNet 1.9.1 cannot run on the newest GPUs, and MXNet and PyTorch must never share a
process, so everything that holds no framework logic (all of ``data/``, the model specs
and architectures, the run-folder contract and training configuration, the predictor's
parent, ensembling and reporting) imports no framework at module level. The modules that
do are listed here, one by one: a new module is framework-neutral unless it is added to
``FRAMEWORK_MODULES``, and an entry that no longer imports a framework must leave it.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("data", "models", "train", "predict")
FRAMEWORKS = ("mxnet", "gluoncv", "torch", "timm")

FRAMEWORK_MODULES = {
    # MXNet / Gluon: the networks, their weights and the model listing that counts parameters.
    "models.__main__", "models.classifier", "models.dpn", "models.export", "models.factory",
    "models.gluoncv_nets", "models.registry", "models.weights",
    # PyTorch: the twins of the networks, the training backend and its input, the predictor's
    # PyTorch model worker.
    "models.torch_nets", "train.backend_torch", "train.torch_data", "predict.torch_models", "predict.torch_decode",
    # MXNet: the training backend and what still uses it directly.
    "train.backend_mxnet", "train.checkpoint", "train.devices", "train.evaluate", "train.metrics_mxnet",
    "train.optim", "train.step",
}

# Every framework made unimportable: a package of that name that raises on import, found first.
_BLOCKER = 'raise ImportError("%s is made unimportable by tests/test_layering.py")\n'

_IMPORT_EACH = textwrap.dedent("""
    import importlib, json, sys
    outcome = {}
    for name in sys.argv[1:]:
        try:
            importlib.import_module(name)
            outcome[name] = None
        except ImportError as error:
            outcome[name] = str(error)
    print(json.dumps(outcome))
""")


def all_modules():
    """Dotted names of every module of the packages (``data``, ``data.atomic``, ...)."""
    names = []
    for package in PACKAGES:
        for filename in sorted(os.listdir(os.path.join(ROOT, package))):
            stem, ext = os.path.splitext(filename)
            if ext == ".py":
                names.append(package if stem == "__init__" else "%s.%s" % (package, stem))
    return names


@pytest.fixture(scope="module")
def without_frameworks(tmp_path_factory):
    """Environment for a subprocess in which every framework of ``FRAMEWORKS`` fails to import."""
    blockers = tmp_path_factory.mktemp("no-frameworks")
    for framework in FRAMEWORKS:
        (blockers / framework).mkdir()
        (blockers / framework / "__init__.py").write_text(_BLOCKER % framework)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(blockers), ROOT]))


def test_framework_modules_exist():
    assert FRAMEWORK_MODULES <= set(all_modules())


def test_neutral_modules_import_without_any_framework_and_the_others_need_one(without_frameworks):
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *all_modules()], cwd=ROOT, env=without_frameworks,
                            capture_output=True, text=True, check=True)
    outcome = json.loads(result.stdout)
    assert {name: error for name, error in outcome.items() if error and name not in FRAMEWORK_MODULES} == {}
    assert sorted(name for name in FRAMEWORK_MODULES if outcome[name] is None) == []


def test_model_specs_without_any_framework(without_frameworks):
    code = ("import models; spec = models.get_spec('dpn92'); "
            "print(spec.family, spec.feature_channels, 'dpn92' in models.list_models())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=without_frameworks, capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == ["dpn", "2688", "True"]


@pytest.mark.parametrize("command", [
    ["-m", "data.bson2rec", "--help"],
    ["predict/predict.py", "--help"],
    ["predict/ensemble.py", "--help"],
    ["train/train.py", "--help"],
])
def test_commands_run_without_any_framework(command, without_frameworks):
    result = subprocess.run([sys.executable, *command], cwd=ROOT, env=without_frameworks, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
