"""The layers, read from every import of every module (at module level and inside functions),
and checked again with the frameworks made unimportable.

1. Imports flow one way, data -> models -> train | predict, and train and predict never
   import each other: what both need lives beneath them.
2. Each framework has a home whose name says so: a module that imports MXNet or GluonCV
   lives in a folder or file named for MXNet (``models/mxnet_nets/``,
   ``train/mxnet_backend/``, ``predict/mxnet_runner.py``), one that imports PyTorch,
   torchvision or timm in one named for PyTorch (``torch``); none imports both, and a
   module outside the homes reaches one only through the registry of backends
   (``models.backends``), never by an import of its own.

MXNet 1.9.1 cannot run on the newest GPUs, and MXNet and PyTorch must never share a
process: everything outside the homes must import, and the commands run, where no
framework is installed.
"""
import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("data", "models", "train", "predict")
LAYERS = {"data": 0, "models": 1, "train": 2, "predict": 2}
# Each framework's packages and the word its home's path carries.
FRAMEWORK_HOMES = {"mxnet": ("mxnet", "gluoncv"), "torch": ("torch", "torchvision", "timm")}
BLOCKED = tuple(package for packages in FRAMEWORK_HOMES.values() for package in packages)


def python_files(root=ROOT):
    """``{dotted module name: path}`` of the packages' modules and the benchmarks (``bench/``,
    named as they import each other: by file stem)."""
    found = {}
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for filename in sorted(files):
                if filename.endswith(".py"):
                    path = os.path.join(folder, filename)
                    parts = os.path.relpath(path, root)[:-3].split(os.sep)
                    found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for filename in sorted(os.listdir(os.path.join(root, "bench"))):
        if filename.endswith(".py"):
            found["bench." + filename[:-3]] = os.path.join(root, "bench", filename)
    return found


def imported_names(path):
    """Every module name `path` imports, anywhere in it (functions included), absolute."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update("%s.%s" % (node.module, alias.name) for alias in node.names)
    return names


def home_of(module):
    """The framework whose home holds `module` (its dotted path names it), or None."""
    words = module.replace(".", "_").split("_")
    homes = [framework for framework in FRAMEWORK_HOMES if framework in words]
    return homes[0] if len(homes) == 1 else None


def frameworks_imported(names):
    return {framework for framework, packages in FRAMEWORK_HOMES.items()
            if any(name.split(".")[0] in packages for name in names)}


def project_modules_imported(names, modules):
    """The project's modules among `names` (``a.b.c`` counts as ``a.b`` when ``c`` is a name)."""
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def layering_problems(root=ROOT):
    """Every breach of the two rules in the tree at `root`, one line each."""
    modules = python_files(root)
    bench_names = {name.split(".", 1)[1]: name for name in modules if name.startswith("bench.")}
    problems = []
    for module, path in modules.items():
        names = imported_names(path)
        names |= {bench_names[n] for n in names if n in bench_names}
        layer = module.split(".")[0]
        for other in sorted(project_modules_imported(names, modules) - {module}):
            other_layer = other.split(".")[0]
            if layer in LAYERS and other_layer in LAYERS and (LAYERS[other_layer] > LAYERS[layer] or
                                                              (other_layer != layer and
                                                               LAYERS[other_layer] == LAYERS[layer])):
                problems.append("%s imports %s: %s may not import %s" % (module, other, layer, other_layer))
            if home_of(other) and home_of(other) != home_of(module) and module.split(".")[0] != "bench" \
                    and not module.startswith(other + "."):
                problems.append("%s imports %s, a module of the %s home, without the registry of backends"
                                % (module, other, home_of(other)))
        used = frameworks_imported(names)
        if len(used) > 1:
            problems.append("%s imports both %s" % (module, " and ".join(sorted(used))))
        for framework in used:
            if home_of(module) != framework:
                problems.append("%s imports %s but does not live in a %s home" % (module, framework, framework))
    return problems


def test_imports_flow_down_and_each_framework_stays_in_its_home():
    assert layering_problems() == []


def test_the_rules_see_imports_inside_functions(tmp_path):
    for package in PACKAGES + ("bench",):
        (tmp_path / package).mkdir()
    (tmp_path / "train" / "fit.py").write_text("def f():\n    from predict.combine import mean\n")
    (tmp_path / "predict" / "combine.py").write_text("def g():\n    import mxnet\n")
    (tmp_path / "models" / "torch_nets").mkdir()
    (tmp_path / "models" / "torch_nets" / "x.py").write_text("import torch\nimport mxnet\n")
    (tmp_path / "data" / "y.py").write_text("def h():\n    from models.torch_nets import x\n")
    assert sorted(layering_problems(str(tmp_path))) == sorted([
        "train.fit imports predict.combine: train may not import predict",
        "predict.combine imports mxnet but does not live in a mxnet home",
        "models.torch_nets.x imports both mxnet and torch",
        "models.torch_nets.x imports mxnet but does not live in a mxnet home",
        "data.y imports models.torch_nets.x: data may not import models",
        "data.y imports models.torch_nets.x, a module of the torch home, without the registry of backends"])


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


@pytest.fixture(scope="module")
def without_frameworks(tmp_path_factory):
    """Environment for a subprocess in which every framework of ``BLOCKED`` fails to import."""
    blockers = tmp_path_factory.mktemp("no-frameworks")
    for framework in BLOCKED:
        (blockers / framework).mkdir()
        (blockers / framework / "__init__.py").write_text(_BLOCKER % framework)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(blockers), ROOT]))


def test_every_module_outside_the_homes_imports_without_any_framework(without_frameworks):
    neutral = [name for name in python_files() if not home_of(name) and not name.startswith("bench.")]
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *neutral], cwd=ROOT, env=without_frameworks,
                            capture_output=True, text=True, check=True)
    assert {name: error for name, error in json.loads(result.stdout).items() if error} == {}


def test_model_specs_and_the_registry_without_any_framework(without_frameworks):
    code = ("import models; from models.backends import BACKENDS; spec = models.get_spec('dpn92'); "
            "print(spec.family, spec.feature_channels, 'dpn92' in models.list_models(), ','.join(BACKENDS))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=without_frameworks, capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == ["dpn", "2688", "True", "mxnet,torch"]


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


ENTRY_POINTS = ["train/train.py", "predict/predict.py", "predict/ensemble.py", "predict/score.py",
                "bench/bench_train.py", "bench/bench_predict.py", "bench/bench_models.py", "bench/bench_bson2rec.py",
                "bench/bench_index.py"]


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_commands_run_from_a_checkout_without_an_install_step(script, tmp_path):
    """The GPU machines run the commands from a plain checkout: each puts the checkout's
    packages first on ``sys.path``. Packages of the same names placed where an install would
    put them (``PYTHONPATH``, ahead of site-packages) refuse to import: the checkout's must
    be found before them."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(
            'raise ImportError("the installed %s was imported instead of the checkout\'s")\n' % package)
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
