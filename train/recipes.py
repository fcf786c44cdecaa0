"""The reference's training recipes as data: each network's defaults and the models M01-M14.

A recipe is a network, a dataset, where it starts (ImageNet weights, or the last epoch of a
parent model's run) and one or more phases; a phase is one ``train/train.py`` run up to an
epoch with its own arguments, and the next phase continues from that epoch with other
settings, as the reference did when it changed its optimizer or augmentation mid-run.

``python train/train.py --recipe M06 [recipe options] [train.py options]`` runs a recipe
(``train.train`` runs each phase as its own process); ``shell/train_<network>.sh`` and
``shell/train_all.sh`` only turn the environment into those options. This module is kept
free of MXNet so that a recipe can be read, listed and checked anywhere.

The values are the reference's (REFERENCE.md, "Training recipe of the reference", and its
logs): NAdam lr 1e-4 multiplied by 0.2 at the step epochs, label smoothing 0.1, random
mirror only, batch 512 (384 for DPN-107/131); weight decay reaches SGD/NAG only
(``--wd-sgd-only``).

Beside them, `MODERN` holds recipes of today's backbones from timm (``timm/<name>``), with
the settings they are usually trained with: AdamW, a cosine schedule after a warm-up, label
smoothing, a moving average of the weights (timm's ``ModelEmaV3``, validated and kept),
their own ImageNet normalisation and weights (``--pretrained timm``), and stronger
augmentation than the reference's mirror. Their accuracy on Cdiscount has not been
measured. A recipe's network decides its backend: one whose family the default backend
cannot build runs on the one that can (``models.families``, ``models.backends``: timm's
networks on PyTorch).
"""
import argparse
import dataclasses
import os
from dataclasses import dataclass

from data.cli import UserError, add_device_options, positive_int
from data.devices import gpu_devices, gpu_numbers
from models.backends import DEFAULT_BACKEND, get_backend
from models.families import family_of
from models.families.timm_models import TIMM_WEIGHTS


@dataclass(frozen=True)
class Phase:
    """One ``train.py`` run of a recipe: train until epoch `until_epoch` with `arguments`.

    Every phase after the first continues from the epoch the one before ended at."""

    until_epoch: int
    arguments: tuple = ()


@dataclass(frozen=True)
class Recipe:
    """A network trained on a dataset in phases, from ImageNet weights or from a parent's run."""

    name: str                 # "M06", or a network's name for its defaults
    network: str
    dataset: str              # A, B or C: <rec dir>/<dataset>_train.rec and _val.rec
    batch_size: int
    phases: tuple
    pretrained_file: str = ""  # ImageNet weights in the pretrained folder, for a recipe without parent, or the
                               # network family's own word for its library's weights (--pretrained timm)
    parent: str = ""          # the recipe whose run's last epoch the first phase starts from
    note: str = ""


@dataclass(frozen=True)
class NetworkDefaults:
    """How the reference usually trained a network: one phase from ImageNet weights."""

    network: str
    pretrained_file: str
    num_epochs: int
    lr_step_epochs: tuple
    batch_size: int = 512
    optimizer: str = "nadam"
    lr: float = 1e-4
    lr_factor: float = 0.2
    label_smoothing: float = 0.1

    def arguments(self):
        """The ``train.py`` arguments of its optimizer and schedule."""
        return ("--optimizer", self.optimizer, "--lr", str(self.lr), "--lr-factor", str(self.lr_factor),
                "--lr-step-epochs", ",".join(map(str, self.lr_step_epochs)),
                "--label-smoothing", str(self.label_smoothing))

    def recipe(self, name=None, dataset="A", arguments=(), note=""):
        """These defaults as a one-phase recipe (named after the network unless `name`),
        `arguments` added to the phase's."""
        return Recipe(name or self.network, self.network, dataset, self.batch_size,
                      (Phase(self.num_epochs, self.arguments() + tuple(arguments)),), self.pretrained_file, note=note)


NETWORKS = {defaults.network: defaults for defaults in (
    NetworkDefaults("densenet161", "densenet161.params", 20, (10, 14, 17)),
    NetworkDefaults("dpn92", "dpn92-0000.params", 11, (8, 10)),
    NetworkDefaults("dpn98", "dpn98-0000.params", 15, (6, 10, 13)),
    # "dpn107-extra": pretrained on ImageNet-5k, fine-tuned on 1k.
    NetworkDefaults("dpn107", "dpn107-extra-0000.params", 20, (10, 13, 17), batch_size=384),
    NetworkDefaults("dpn131", "dpn131-0000.params", 17, (10, 13, 15), batch_size=384),
    NetworkDefaults("resnext101_32x4d", "resnext101_32x4d.params", 19, (6, 8, 10)),
    NetworkDefaults("resnext101_64x4d", "resnext101_64x4d.params", 15, (6, 10, 13)),
)}

_HSL = ("--max-random-h", "20", "--max-random-s", "20", "--max-random-l", "20")

# SE-ResNeXt-101 64x4d starts from a ResNeXt-101 64x4d run (its layers and classifier are
# copied, the squeeze-excitation layers start fresh) and trains in phases.
_SE_RESNEXT = dict(network="se_resnext101_64x4d", batch_size=512)

MODELS = {recipe.name: recipe for recipe in (
    dataclasses.replace(NETWORKS["resnext101_32x4d"], num_epochs=23, lr_step_epochs=(8, 11),
                        label_smoothing=0.0).recipe("M01", "C"),
    dataclasses.replace(NETWORKS["dpn92"], num_epochs=13, lr_step_epochs=(6, 10)).recipe("M02", "C"),
    dataclasses.replace(NETWORKS["dpn92"], num_epochs=13, lr_step_epochs=(6, 10)).recipe(
        "M03", "C", ("--seed", "1"), note="M02 with another seed"),
    NETWORKS["densenet161"].recipe("M04"),
    NETWORKS["dpn98"].recipe("M05"),
    NETWORKS["dpn92"].recipe("M06"),
    NETWORKS["resnext101_64x4d"].recipe("M07"),
    dataclasses.replace(NETWORKS["dpn131"], optimizer="nag", lr=0.005, num_epochs=18,
                        lr_step_epochs=(10, 13, 16)).recipe("M08", note="NAG, with weight decay 4e-5"),
    NETWORKS["resnext101_64x4d"].recipe("M09", "B"),
    NETWORKS["resnext101_32x4d"].recipe("M10"),
    # M11's parent: REFERENCE.md's table says M10, but M11's log loads
    # "resnext-101-64x4d/resnext-101-64x4d-0015.params" trained on dataset A: a ResNeXt-101 64x4d
    # after 15 epochs, i.e. M07 (M10 is the 32x4d network, whose shapes an SE-ResNeXt-101 64x4d
    # cannot take).
    Recipe("M11", dataset="A", parent="M07", phases=(
        # The reference's code had no label smoothing yet.
        Phase(4, ("--optimizer", "adam", "--lr", "5e-5", "--label-smoothing", "0")),
        Phase(10, ("--optimizer", "nadam", "--lr", "1e-4", "--lr-step-epochs", "4,6,8", "--label-smoothing", "0.1")),
        Phase(15, ("--optimizer", "nadam", "--lr", "1e-4", "--lr-step-epochs", "4,6,13", "--label-smoothing", "0.1",
                   "--dropout", "0.2", *_HSL)),
    ), note="not M10 as REFERENCE.md's table says", **_SE_RESNEXT),
    NETWORKS["dpn131"].recipe("M12", "B"),
    Recipe("M13", dataset="B", parent="M09", phases=(
        Phase(11, ("--optimizer", "nadam", "--lr", "1e-4", "--lr-step-epochs", "4,7,9", "--label-smoothing", "0.1",
                   "--dropout", "0.2", "--random-mirror", "1", *_HSL)),
        Phase(13, ("--optimizer", "nadam", "--lr", "1e-4", "--lr-step-epochs", "4,7,9", "--label-smoothing", "0.1",
                   "--dropout", "0.2", "--random-mirror", "0")),
    ), **_SE_RESNEXT),
    NETWORKS["dpn107"].recipe("M14"),
)}

# Every recipe by name: the models, then each network's defaults.
RECIPES = {**MODELS, **{network: defaults.recipe() for network, defaults in NETWORKS.items()}}

# Today's backbones on the same data (not measured on Cdiscount here; README, "Beyond the
# reference"). 192 x 192 input: the 180 x 180 pictures scaled by up to 1.3 and cropped to
# the nearest multiple of the networks' stride of 32 above 180, so that their last feature map is 6 x 6
# and the crop sees most of the picture; AdamW (decay on the layers' weights only), lr 5e-4
# at batch 512 with a quarter-epoch warm-up and a cosine decay over 8 epochs of dataset A
# (11.75 M pictures, 23 k steps each); the moving average decays by 0.9999 a step (a time
# constant of 10 k steps, under half an epoch), warmed up as timm does, validated and
# saved; label smoothing 0.1; mirror, scale and the reference's HSL jitter of 20.
_MODERN_PHASE = ("--optimizer", "adamw", "--lr", "5e-4", "--wd", "0.05", "--lr-schedule", "cosine",
                 "--warmup-epochs", "0.25", "--warmup-begin-lr", "1e-6", "--min-lr", "1e-6",
                 "--label-smoothing", "0.1", "--ema-decay", "0.9999", "--ema-warmup", "--ema-eval",
                 "--normalization", "imagenet", "--image-shape", "3,192,192", "--random-mirror", "1",
                 "--random-crop", "1", "--max-random-scale", "1.3", *_HSL)
MODERN = {recipe.name: recipe for recipe in (
    Recipe("T01", "timm/convnext_tiny", "A", 512, (Phase(8, _MODERN_PHASE),), TIMM_WEIGHTS,
           note="ConvNeXt-T (28 M parameters), timm's ImageNet-12k weights; not measured on Cdiscount"),
    Recipe("T02", "timm/efficientnetv2_rw_s", "A", 512, (Phase(8, _MODERN_PHASE + ("--dropout", "0.2")),),
           TIMM_WEIGHTS, note="EfficientNetV2-S (24 M parameters), dropout 0.2; not measured on Cdiscount"),
)}

RUN_NAMES = ("model", "network")


@dataclass(frozen=True)
class Settings:
    """Where and how to run a recipe, beyond the recipe itself (shell/train_common.sh's
    environment). None: the recipe's own."""

    rec_dir: str = "work/rec"
    runs_dir: str = "work/runs"
    pretrained_dir: str = "work/pretrained"
    dataset: str | None = None
    parent: str | None = None      # run folder (or epoch-NNNN.params) the first phase starts from
    num_epochs: int | None = None  # the epoch the recipe ends at
    gpus: str | None = None        # GPU numbers "0,1" ("": the CPU); None: not passed (train.py
                                   # --recipe passes every GPU MXNet sees); phases get --devices
    run_names: str = "model"       # run folders <runs>/M06_dpn92 ("model") or <runs>/dpn92_A ("network")


def run_name(recipe, dataset, run_names="model"):
    """The run folder's name: ``M06_dpn92`` for a model, ``dpn92_A`` for a network's defaults
    or with `run_names` "network" (the folders of the per-network scripts)."""
    if run_names == "network" or recipe.name == recipe.network:
        return "%s_%s" % (recipe.network, dataset)
    return "%s_%s" % (recipe.name, recipe.network)


def ending_at(phases, num_epochs):
    """The phases of a recipe made to end at epoch `num_epochs`: the phase it falls in ends
    there and later ones are dropped; past the last phase, the last one is longer."""
    kept = [phase for phase in phases if phase.until_epoch < num_epochs]
    last = phases[len(kept)] if len(kept) < len(phases) else kept.pop()
    return (*kept, dataclasses.replace(last, until_epoch=num_epochs))


def _start(recipe, settings, dataset):
    """The first phase's start: the parent's run, else the ImageNet weights (a file of the
    pretrained folder, or the family's own word for its library's weights)."""
    parent = settings.parent
    if parent is None and recipe.parent:
        parent = os.path.join(settings.runs_dir, run_name(RECIPES[recipe.parent], dataset, settings.run_names))
    if parent:
        return ["--from-run", parent]
    if recipe.pretrained_file == family_of(recipe.network).default_weights:
        return ["--pretrained", recipe.pretrained_file]
    return ["--pretrained", os.path.join(settings.pretrained_dir, recipe.pretrained_file)]


def recipe_backend(recipe):
    """The backend a recipe's network runs on by default (``models.backends``): the
    default backend when its family has a builder there, else the first that has one."""
    builders = family_of(recipe.network).builders
    return DEFAULT_BACKEND if DEFAULT_BACKEND in builders else sorted(builders)[0]


def phase_arguments(recipe, settings=Settings(), extra=()):
    """The ``train.py`` arguments of each phase of `recipe`: the settings, the recipe's, then
    `extra` (which win: argparse keeps an option's last value).

    Every phase resumes (``--resume``), so a recipe can simply be run again after an
    interruption; a later phase continues from the epoch the one before ended at
    (``--load-epoch``)."""
    dataset = settings.dataset or recipe.dataset
    phases = recipe.phases if settings.num_epochs is None else ending_at(recipe.phases, settings.num_epochs)
    common = ["--network", recipe.network,
              "--data-train", os.path.join(settings.rec_dir, "%s_train.rec" % dataset),
              "--data-val", os.path.join(settings.rec_dir, "%s_val.rec" % dataset),
              "--model-dir", os.path.join(settings.runs_dir, run_name(recipe, dataset, settings.run_names)),
              "--batch-size", str(recipe.batch_size), "--wd-sgd-only", "--resume"]
    if recipe_backend(recipe) != DEFAULT_BACKEND:
        common += ["--backend", recipe_backend(recipe)]
    if settings.gpus is not None:
        common += ["--devices", gpu_devices(settings.gpus)]
    starts = [_start(recipe, settings, dataset)] + [["--load-epoch", str(phase.until_epoch)] for phase in phases[:-1]]
    return [[*common, "--num-epochs", str(phase.until_epoch), *start, *phase.arguments, *extra]
            for phase, start in zip(phases, starts)]


def describe(recipe):
    """One line: network, dataset, start, phases, backend when not the default, and note."""
    start = "from " + recipe.parent if recipe.parent else "from ImageNet"
    ends = [str(phase.until_epoch) for phase in recipe.phases]
    epochs = "phases to epochs " + ", ".join(ends) if len(ends) > 1 else ends[0] + " epochs"
    backend = recipe_backend(recipe)
    only = ", %s only" % get_backend(backend).framework if backend != DEFAULT_BACKEND else ""
    return "%-20s dataset %s, %s, %s%s%s" % (recipe.network, recipe.dataset, start, epochs, only,
                                            "; " + recipe.note if recipe.note else "")


@dataclass(frozen=True)
class Request:
    """What ``train.py --recipe`` asks for: recipes to run in turn, the settings, and the
    other ``train.py`` arguments (added to every phase's, and winning)."""

    recipes: tuple
    settings: Settings
    extra: tuple = ()
    dry_run: bool = False


def build_parser():
    """The options of ``train.py --recipe``; the others go on to each phase's ``train.py``."""
    parser = argparse.ArgumentParser(
        prog="train", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="python train/train.py --recipe NAME [NAME ...] [recipe options] [train.py options]",
        description="Run the reference's recipes: each phase is a train.py run with the recipe's arguments, then\n"
                    "the train.py options given here, which win (e.g. --lr 5e-5, --batch-size 64 --grad-accum 8).\n"
                    "Every phase resumes, so re-running continues after an interruption.",
        epilog="recipes:\n" + "\n".join("  %-17s %s" % (name, describe(recipe)) for name, recipe in RECIPES.items())
               + "\n  %-17s M01 ... M14 in turn (parents first)" % "all"
               + "\nbeyond the reference (accuracy on Cdiscount not measured):\n"
               + "\n".join("  %-17s %s" % (name, describe(recipe)) for name, recipe in MODERN.items()))
    parser.add_argument("--recipe", nargs="+", required=True, metavar="NAME",
                        help="M01 ... M14, all, a network's defaults or a recipe beyond the reference (see below)")
    parser.add_argument("--rec-dir", default=Settings.rec_dir, help="folder of the RecordIO datasets")
    parser.add_argument("--dataset", default=None, help="A, B or C: <rec dir>/<dataset>_train.rec and _val.rec "
                        "(default: the recipe's)")
    parser.add_argument("--runs-dir", default=Settings.runs_dir, help="folder of the run folders")
    parser.add_argument("--run-names", choices=RUN_NAMES, default=Settings.run_names,
                        help="run folders <runs dir>/M06_dpn92 (model) or <runs dir>/dpn92_A (network: the "
                             "per-network scripts'); a network's defaults always run in the latter")
    parser.add_argument("--parent", default=None, help="run folder the first phase starts from (default: the run "
                        "folder of the recipe's parent model; without one, the ImageNet weights)")
    parser.add_argument("--pretrained-dir", default=Settings.pretrained_dir,
                        help="folder of the ImageNet weights (--pretrained FILE: another file; '': none)")
    parser.add_argument("--num-epochs", type=positive_int, default=None,
                        help="end at this epoch: the phase it falls in ends there, later ones are left out "
                             "(default: the recipe's)")
    add_device_options(parser, default=None, help_text="cpu, or gpu:0,gpu:1,... (default: every GPU MXNet sees)",
                       gpus_alias=True)
    parser.add_argument("--dry-run", action="store_true", help="print each phase's train.py command line, run none")
    return parser


def recipes_named(names):
    """The recipes of `names` ("all": M01 ... M14), in order; UserError on an unknown name."""
    known = {**RECIPES, **MODERN}
    expanded = [model for name in names for model in (MODELS if name == "all" else (name,))]
    unknown = [name for name in expanded if name not in known]
    if unknown:
        raise UserError("unknown recipe %s: choose from %s or all" % (", ".join(unknown), ", ".join(known)))
    return tuple(known[name] for name in expanded)


def parse_request(argv):
    """The recipe run a ``train.py`` command line asks for, or None without ``--recipe``."""
    if not any(arg == "--recipe" or arg.startswith("--recipe=") for arg in argv):
        return None
    options, extra = build_parser().parse_known_args(argv)
    settings = Settings(rec_dir=options.rec_dir, runs_dir=options.runs_dir, pretrained_dir=options.pretrained_dir,
                        dataset=options.dataset, parent=options.parent, num_epochs=options.num_epochs,
                        gpus=None if options.devices is None else gpu_numbers(options.devices),
                        run_names=options.run_names)
    return Request(recipes_named(options.recipe), settings, tuple(extra), options.dry_run)
