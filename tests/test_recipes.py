"""The recipes as data (train/recipes.py): every recipe turns into command lines that
train.py's own parser takes, carrying the reference's values (checked against a table written
out here, from REFERENCE.md and the shell recipes that held them before), and
`train.py --recipe` runs them."""
import os
import shlex
import subprocess
import sys

import pytest

from data.cli import UserError
from train import recipes
from train.args import parse_args
from train.recipes import MODELS, NETWORKS, RECIPES, Settings, phase_arguments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = Settings(rec_dir="/rec", runs_dir="/runs", pretrained_dir="/weights", gpus="0,1")

# model: network, dataset, batch, parent run folder (None: ImageNet weights), and per phase
# (epochs to reach, optimizer, lr, lr steps or None for train.py's default, label smoothing,
#  dropout, HSL jitter, random mirror)
REFERENCE = {
    "M01": ("resnext101_32x4d", "C", 512, None, [(23, "nadam", 1e-4, [8, 11], 0.0, 0.0, 0, 1)]),
    "M06": ("dpn92", "A", 512, None, [(11, "nadam", 1e-4, [8, 10], 0.1, 0.0, 0, 1)]),
    "M08": ("dpn131", "A", 384, None, [(18, "nag", 0.005, [10, 13, 16], 0.1, 0.0, 0, 1)]),
    "M11": ("se_resnext101_64x4d", "A", 512, "M07_resnext101_64x4d", [
        (4, "adam", 5e-5, None, 0.0, 0.0, 0, 1),
        (10, "nadam", 1e-4, [4, 6, 8], 0.1, 0.0, 0, 1),
        (15, "nadam", 1e-4, [4, 6, 13], 0.1, 0.2, 20, 1)]),
    "M12": ("dpn131", "B", 384, None, [(17, "nadam", 1e-4, [10, 13, 15], 0.1, 0.0, 0, 1)]),
    "M13": ("se_resnext101_64x4d", "B", 512, "M09_resnext101_64x4d", [
        (11, "nadam", 1e-4, [4, 7, 9], 0.1, 0.2, 20, 1),
        (13, "nadam", 1e-4, [4, 7, 9], 0.1, 0.2, 0, 0)]),
    "M14": ("dpn107", "A", 384, None, [(20, "nadam", 1e-4, [10, 13, 17], 0.1, 0.0, 0, 1)]),
}
PRETRAINED = {"M01": "resnext101_32x4d.params", "M06": "dpn92-0000.params", "M08": "dpn131-0000.params",
              "M12": "dpn131-0000.params", "M14": "dpn107-extra-0000.params"}


def parsed(name, settings=SETTINGS, extra=()):
    return [parse_args(argv) for argv in phase_arguments(RECIPES[name], settings, extra)]


def test_recipes_import_no_framework():
    subprocess.run([sys.executable, "-c", "import sys, train.recipes; assert 'mxnet' not in sys.modules"],
                   cwd=ROOT, check=True)


def test_the_table_holds_the_fourteen_models_and_each_network():
    assert list(MODELS) == ["M%02d" % n for n in range(1, 15)]
    assert set(RECIPES) == set(MODELS) | set(NETWORKS)
    assert {RECIPES[name].network for name in NETWORKS} == set(NETWORKS)


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_expands_into_phases_train_py_takes(name):
    recipe = RECIPES[name]
    phases = parsed(name)
    assert [args.num_epochs for args in phases] == [phase.until_epoch for phase in recipe.phases]
    assert sorted(set(args.num_epochs for args in phases)) == [args.num_epochs for args in phases]
    first = phases[0]
    assert first.load_epoch is None
    if recipe.parent:
        parent = RECIPES[recipe.parent]
        assert first.from_run == "/runs/%s_%s" % (parent.name, parent.network)
    else:
        assert recipe.pretrained_file and first.from_run is None
        assert first.pretrained == "/weights/" + recipe.pretrained_file
    for before, args in zip(phases, phases[1:]):
        assert (args.load_epoch, args.from_run) == (before.num_epochs, None)
    for args in phases:
        assert args.network == recipe.network
        assert (args.data_train, args.data_val) == ("/rec/%s_train.rec" % recipe.dataset,
                                                    "/rec/%s_val.rec" % recipe.dataset)
        assert args.model_dir == phases[0].model_dir
        assert args.resume and args.wd_sgd_only and args.gpus == "0,1"
        assert args.batch_size == recipe.batch_size


@pytest.mark.parametrize("name", list(REFERENCE))
def test_recipes_carry_the_reference_values(name):
    network, dataset, batch, parent, expected = REFERENCE[name]
    phases = parsed(name)
    assert len(phases) == len(expected)
    for args, (epochs, optimizer, lr, steps, smoothing, dropout, hsl, mirror) in zip(phases, expected):
        assert (args.network, args.data_train, args.batch_size) == (network, "/rec/%s_train.rec" % dataset, batch)
        assert (args.num_epochs, args.optimizer, args.lr, args.label_smoothing) == (epochs, optimizer, lr, smoothing)
        assert args.lr_step_epochs == steps or steps is None
        assert args.lr_factor == 0.2
        assert (args.dropout, args.max_random_h, args.max_random_s, args.max_random_l) == (dropout, hsl, hsl, hsl)
        assert args.random_mirror == mirror
    if parent:
        assert phases[0].from_run == "/runs/" + parent
    else:
        assert phases[0].pretrained == "/weights/" + PRETRAINED[name]
    assert phases[0].model_dir == "/runs/%s_%s" % (name, network)


def test_m03_is_m02_with_another_seed():
    (m02,), (m03,) = parsed("M02"), parsed("M03")
    assert (m02.seed, m03.seed) == (0, 1)
    assert {k: v for k, v in vars(m02).items() if k not in ("seed", "model_dir")} == \
        {k: v for k, v in vars(m03).items() if k not in ("seed", "model_dir")}


def test_all_runs_the_models_in_order_parents_first():
    order = [recipe.name for recipe in recipes.recipes_named(["all"])]
    assert order == list(MODELS)
    for position, name in enumerate(order):
        assert not RECIPES[name].parent or RECIPES[name].parent in order[:position]


@pytest.mark.parametrize("num_epochs, ends", [(2, [2]), (4, [4]), (7, [4, 7]), (10, [4, 10]), (15, [4, 10, 15]),
                                              (20, [4, 10, 20])])
def test_num_epochs_ends_the_recipe_there(num_epochs, ends):
    phases = parsed("M11", Settings(num_epochs=num_epochs))
    assert [args.num_epochs for args in phases] == ends
    assert [args.load_epoch for args in phases] == [None] + ends[:-1]
    assert [args.optimizer for args in phases] == ["adam", "nadam", "nadam"][:len(ends)]


def test_extra_arguments_win_in_every_phase():
    phases = parsed("M13", extra=("--lr", "3e-4", "--batch-size", "64", "--no-resume", "--no-wd-sgd-only"))
    assert [(args.lr, args.batch_size, args.resume, args.wd_sgd_only) for args in phases] == \
        [(3e-4, 64, False, False)] * 2
    assert [args.lr_step_epochs for args in phases] == [[4, 7, 9]] * 2


@pytest.mark.parametrize("name, settings, model_dir, start", [
    ("M11", Settings(), "work/runs/M11_se_resnext101_64x4d", "work/runs/M07_resnext101_64x4d"),
    ("M11", Settings(run_names="network"), "work/runs/se_resnext101_64x4d_A", "work/runs/resnext101_64x4d_A"),
    ("M13", Settings(run_names="network", dataset="C"), "work/runs/se_resnext101_64x4d_C",
     "work/runs/resnext101_64x4d_C"),
    ("M13", Settings(parent="/elsewhere"), "work/runs/M13_se_resnext101_64x4d", "/elsewhere"),
    ("dpn92", Settings(), "work/runs/dpn92_A", None),
    ("dpn92", Settings(dataset="B", parent="/r"), "work/runs/dpn92_B", "/r"),
    ("M06", Settings(run_names="network"), "work/runs/dpn92_A", None),
])
def test_run_folders_and_parents(name, settings, model_dir, start):
    first = parsed(name, settings)[0]
    assert (first.model_dir, first.from_run) == (model_dir, start)


def test_a_recipe_command_line_splits_into_settings_and_train_py_arguments():
    request = recipes.parse_request(["--lr", "5e-5", "--recipe", "M06", "M11", "--rec-dir", "/r", "--gpus", "",
                                     "--num-epochs", "3", "--run-names", "network", "--pretrained", "", "--dry-run"])
    assert [recipe.name for recipe in request.recipes] == ["M06", "M11"]
    assert request.settings == Settings(rec_dir="/r", gpus="", num_epochs=3, run_names="network")
    assert request.extra == ("--lr", "5e-5", "--pretrained", "") and request.dry_run
    assert recipes.parse_request(["--network", "dpn92", "--data-train", "x.rec"]) is None
    with pytest.raises(UserError, match="unknown recipe M15, dpn"):
        recipes.parse_request(["--recipe", "M06", "M15", "dpn"])


def run_train(*arguments):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train", "train.py"), *arguments], cwd=ROOT,
                          capture_output=True, text=True)


def test_train_py_prints_a_recipes_phases_and_refuses_an_unknown_one():
    done = run_train("--recipe", "M11", "--dry-run", "--gpus", "0", "--rec-dir", "/r", "--lr", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [shlex.split(line)[:2] for line in lines] == [[sys.executable, os.path.join(ROOT, "train", "train.py")]] * 3
    assert [shlex.split(line)[2:] for line in lines] == \
        phase_arguments(RECIPES["M11"], Settings(rec_dir="/r", gpus="0"), ("--lr", "1"))

    unknown = run_train("--recipe", "M15")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [unknown.stderr.strip()] and \
        unknown.stderr.startswith("train: error: unknown recipe M15: choose from M01, ")
