"""Command-line arguments of ``train/train.py``, in groups shared by every recipe.

Names follow MXNet's ``example/image-classification/common`` (``--kv-store``,
``--lr-step-epochs``, ``--load-epoch``, ...), except for the devices: ``--devices
gpu:0,gpu:1`` as every tool spells them (``--gpus 0,1`` still works, with a note); they
reach the configuration as its ``gpus`` field, so runs started before keep resuming.
Defaults are the reference recipe (REFERENCE.md): NAdam,
lr 1e-4, x0.2 at the given epochs, batch 512, label smoothing 0.1, random mirror only,
raw 0-255 pixels, kvstore ``device``.
"""
import argparse
import re

from data.cli import add_common_options, add_device_options, gpu_numbers_of, positive_int
from models.backends import (BACKENDS, DEFAULT_BACKEND, WORKER_DECODE, backend_names, backends_with, compiler_problem,
                             get_backend)
from models.families import FAMILIES, ArchitectureError, family_of
from train.config import KVSTORES, LR_SCHEDULES, OPTIMIZERS, TrainConfig

DECODE_PLACES = tuple(dict.fromkeys(place for backend in BACKENDS.values() for place in backend.decode_places))
DTYPES = tuple(dict.fromkeys(dtype for backend in BACKENDS.values() for dtype in backend.dtypes))


def _int_list(text):
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected integers separated by commas, got %r" % text) from None


def _image_shape(text):
    shape = tuple(_int_list(text))
    if len(shape) != 3 or shape[0] != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError("--image-shape is 3,HEIGHT,WIDTH, got %r" % text)
    return shape


def add_data_args(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--data-train", required=True, help="indexed training .rec (its .idx beside it)")
    group.add_argument("--data-val", default="", help="indexed validation .rec in BSON file order; empty: no validation")
    group.add_argument("--num-classes", type=positive_int, default=5270,
                       help="classifier outputs; must cover the data's class ids")
    group.add_argument("--image-shape", type=_image_shape, default=None,
                       help="3,H,W fed to the network (default: the model's input size, 3,180,180)")
    group.add_argument("--data-nthreads", type=positive_int, default=4,
                       help="JPEG decoding threads (MXNet caps them at max(cores/2-1, 1))")
    group.add_argument("--epoch-size", type=int, default=0,
                       help="images per epoch (all workers together); 0: one full pass. Shorter epochs checkpoint "
                            "and validate more often; each epoch draws from a fresh shuffle")
    group.add_argument("--decode-on", choices=DECODE_PLACES, default=WORKER_DECODE,
                       help="where --backend torch decodes the JPEGs: in the --data-nthreads input workers with "
                            "OpenCV (default), or in batches on the training device (nvJPEG on a GPU; the workers "
                            "then only read records)")
    return group


def add_augmentation_args(parser):
    group = parser.add_argument_group("augmentation (the reference: random mirror only)")
    group.add_argument("--random-mirror", type=int, choices=(0, 1), default=1)
    group.add_argument("--random-crop", type=int, choices=(0, 1), default=0,
                       help="random crop of the input size (a no-op on 180x180 images without scaling)")
    group.add_argument("--min-random-scale", type=float, default=1.0)
    group.add_argument("--max-random-scale", type=float, default=1.0, help="random scale before the crop")
    group.add_argument("--max-random-h", type=int, default=0, help="HSL hue jitter (the reference's ablation: 20)")
    group.add_argument("--max-random-s", type=int, default=0, help="HSL saturation jitter")
    group.add_argument("--max-random-l", type=int, default=0, help="HSL lightness jitter")
    group.add_argument("--resize", type=int, default=-1, help="resize the shorter edge first; -1: off")
    return group


def add_network_args(parser):
    group = parser.add_argument_group("network")
    group.add_argument("--network", required=True,
                       help="registry name (models.list_models()), e.g. dpn92, or timm/<name> for any network of "
                            "timm.list_models() (--backend torch), e.g. timm/convnext_tiny")
    group.add_argument("--pretrained", default=None,
                       help="local ImageNet weights (.params or symbolic checkpoint; --backend torch: timm's or "
                            "torchvision's .safetensors/.pth/.bin too), or 'timm': a timm/<name> network's default "
                            "weights through timm's loader and the Hugging Face cache; empty: none (random init)")
    group.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier")
    group.add_argument("--normalization", choices=("raw", "imagenet"), default="raw",
                       help="input normalisation: raw 0-255 pixels (the reference) or the ImageNet weights' own")
    group.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="float16: GPU only, float32 master weights in the optimizer (multi_precision); "
                            "--backend torch: bfloat16 or float16 autocast (the latter with loss scaling)")
    return group


def add_optimizer_args(parser):
    group = parser.add_argument_group("optimizer")
    group.add_argument("--optimizer", choices=OPTIMIZERS, default="nadam",
                       help="adamw: decoupled weight decay on the layers' weights only, not on norms and biases "
                            "(timm's rule; --backend torch)")
    group.add_argument("--lr", type=float, default=1e-4, help="base learning rate")
    group.add_argument("--mom", type=float, default=0.9, help="momentum of sgd and nag")
    group.add_argument("--wd", type=float, default=4e-5, help="weight decay (weights and BN gammas), every optimizer")
    group.add_argument("--wd-sgd-only", action=argparse.BooleanOptionalAction, default=False,
                       help="reproduce the reference: --wd reaches sgd/nag only, adam/nadam run without weight decay "
                            "(adamw keeps its decoupled decay)")
    group.add_argument("--label-smoothing", type=float, default=0.1,
                       help="probability mass spread over the other classes (MXNet's smooth_alpha)")
    group.add_argument("--batch-size", type=positive_int, default=512,
                       help="images per batch over all devices of a worker")
    group.add_argument("--grad-accum", type=positive_int, default=1,
                       help="batches accumulated per optimizer step (effective batch = batch size x this x workers)")
    return group


def add_schedule_args(parser):
    group = parser.add_argument_group("schedule")
    group.add_argument("--num-epochs", type=positive_int, default=15)
    group.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="step",
                       help="step: multiplied by --lr-factor at --lr-step-epochs (the reference); cosine: from --lr "
                            "to --min-lr over --cosine-epochs")
    group.add_argument("--lr-step-epochs", type=_int_list, default=[10, 13, 15],
                       help="epochs at which the learning rate is multiplied by --lr-factor")
    group.add_argument("--lr-factor", type=float, default=0.2)
    group.add_argument("--cosine-epochs", type=float, default=None,
                       help="epochs over which the cosine schedule falls to --min-lr (default: --num-epochs; give it "
                            "when a run is trained in several commands, so that each follows one schedule)")
    group.add_argument("--min-lr", type=float, default=0.0, help="the floor of the cosine schedule")
    group.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up length (may be fractional)")
    group.add_argument("--warmup-begin-lr", type=float, default=0.0)
    group.add_argument("--freeze-epochs", type=int, default=0,
                       help="for the first N epochs train only the parameters matched by --freeze-keep")
    group.add_argument("--freeze-keep", default=r"^output\.",
                       help="regex over structural parameter names (as in the .params file; a timm/ network's "
                            "own names, its classifier's as output.) that stay trainable while frozen; default: the "
                            "classifier only. E.g. '^(features\\.7|output)\\.' adds the last ResNeXt stage")
    return group


def add_ema_args(parser):
    group = parser.add_argument_group("moving average of the weights (timm's ModelEmaV3)")
    group.add_argument("--ema-decay", type=float, default=0.0,
                       help="keep an exponential moving average of the weights with this decay per optimizer step "
                            "(e.g. 0.9998), saved beside them (epoch-NNNN.ema.*); 0: none")
    group.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=False,
                       help="warm the decay up as timm does (1 - (1 + step)^-2/3, capped at --ema-decay), so that "
                            "a short run's average is not held at its starting weights")
    group.add_argument("--ema-eval", action=argparse.BooleanOptionalAction, default=False,
                       help="validate the moving average instead of the trained weights (predict.py --ema predicts "
                            "with it)")
    return group


def add_device_args(parser):
    group = add_device_options(parser, help_text="cpu, or the GPUs to use: gpu:0,gpu:1,...", gpus_alias=True)
    group.add_argument("--cpu-devices", type=positive_int, default=1,
                       help="CPU contexts to split each batch over with --devices cpu (tests the multi-device path)")
    group.add_argument("--kv-store", choices=KVSTORES, default="device",
                       help="gradient reduction: device/local/nccl on one machine, dist_sync/dist_device_sync "
                            "across machines (start with python -m train.mxnet_backend.launch)")
    return group


def add_compute_args(parser):
    group = parser.add_argument_group("compute backend")
    group.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                       help="; ".join("%s: %s (%s)" % (b.name, b.description, b.gpus) for b in BACKENDS.values()))
    group.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                       help="torch.compile the network (--backend torch)")
    return group


def add_checkpoint_args(parser):
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--model-dir", default=None, help="run folder (default work/runs/<network>)")
    group.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                       help="continue from the run folder's last complete epoch when there is one (later than "
                            "--load-epoch, if given); otherwise start as the other options say. Recipes pass it (a "
                            "later --no-resume wins), so that they can simply be re-run after an interruption")
    start = group.add_mutually_exclusive_group()
    start.add_argument("--load-epoch", type=int, default=None,
                       help="continue from this epoch of the run folder (e.g. a new phase with other settings)")
    start.add_argument("--from-run", default=None,
                       help="initialise from another run: its folder (latest epoch) or an epoch-NNNN.params; "
                            "fresh optimizer, epoch 0")
    return group


def add_logging_args(parser):
    group = parser.add_argument_group("logging")
    group.add_argument("--disp-batches", type=positive_int, default=20, help="log speed and metrics every N batches")
    group.add_argument("--top-k", type=positive_int, default=5)
    group.add_argument("--seed", type=int, default=0, help="data order, augmentation and initialisation seed")
    return group


def build_parser():
    parser = argparse.ArgumentParser(prog="train", description="Fine-tune a network on Cdiscount RecordIO data "
                                     "(MXNet Gluon, or PyTorch with --backend torch).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     epilog="The reference's recipes (train/recipes.py): --recipe M06 [recipe "
                                     "options] [these options]; see --recipe all --help.")
    for add in (add_data_args, add_augmentation_args, add_network_args, add_optimizer_args, add_schedule_args,
                add_ema_args, add_device_args, add_compute_args, add_checkpoint_args, add_logging_args,
                add_common_options):
        add(parser)
    return parser


# The options only some backends honour: option, its value, and whether a backend honours it.
_BACKEND_OPTIONS = (
    ("--dtype", lambda args: args.dtype, lambda backend, value: value in backend.dtypes),
    ("--decode-on", lambda args: args.decode_on, lambda backend, value: value in backend.decode_places),
    ("--kv-store", lambda args: args.kv_store, lambda backend, value: value in backend.kvstores),
    ("--compile", lambda args: args.compile, lambda backend, value: not value or backend.compiles),
    ("--optimizer", lambda args: args.optimizer, lambda backend, value: value in backend.optimizers),
    ("--ema-decay", lambda args: args.ema_decay, lambda backend, value: not value or backend.ema),
)


def backend_refusal(backend, args):
    """The line refusing the first option of `args` that `backend` (``models.backends``)
    does not honour, naming the option and the backends that do; None when it honours all."""
    for option, value_of, honours in _BACKEND_OPTIONS:
        value = value_of(args)
        if not honours(backend, value):
            others = backends_with(lambda other: honours(other, value))
            shown = option if value is True else "%s %s" % (option, value)
            where = "needs --backend %s" % " or ".join(others) if others else "is not honoured by --backend %s" \
                % backend.name
            reason = backend.refusals.get(option)
            return "%s %s%s" % (shown, where, " (%s)" % reason if reason else "")
    return None


def network_refusal(args):
    """The line refusing a ``--network`` that the backend cannot build (a timm network on
    MXNet), or a ``--pretrained`` word its family does not know; None when all is well (a
    name no family knows is refused where the run first needs its network, as before)."""
    try:
        family = family_of(args.network)
    except KeyError:
        return None
    try:
        family.check_backend(args.backend)
    except ArchitectureError as err:
        return "--network %s: %s" % (args.network, err.args[0])
    words = [f.default_weights for f in FAMILIES.values() if f.default_weights]
    if args.pretrained in words and args.pretrained != family.default_weights:
        return "--pretrained %s loads a %s network's own ImageNet weights; %s takes a file (--pretrained FILE)" % (
            args.pretrained, args.pretrained, args.network)
    return None


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epoch_size < 0:
        parser.error("--epoch-size must be 0 (a full pass) or more")
    if not 0.0 <= args.label_smoothing < 1.0:
        parser.error("--label-smoothing must be in [0, 1)")
    refusal = (network_refusal(args) or backend_refusal(get_backend(args.backend), args)
               or (args.compile and compiler_problem()))
    if refusal:
        parser.error(refusal)
    if not 0.0 <= args.ema_decay < 1.0:
        parser.error("--ema-decay must be in [0, 1)")
    if args.ema_eval and not args.ema_decay:
        parser.error("--ema-eval validates the moving average of the weights: give --ema-decay")
    if args.lr_schedule == "cosine" and args.cosine_epochs is None:
        args.cosine_epochs = float(args.num_epochs)    # recorded: a resume with other --num-epochs is warned of
    if args.cosine_epochs is not None and args.cosine_epochs <= 0:
        parser.error("--cosine-epochs must be more than 0")
    try:
        re.compile(args.freeze_keep)
    except re.error as err:
        parser.error("--freeze-keep is not a regular expression: %s" % err)
    args.gpus = gpu_numbers_of(parser, args.devices)   # the configuration's field, as old runs stored it
    del args.devices
    args.pretrained = args.pretrained or None      # "" too: a later --pretrained "" undoes a recipe's
    if args.model_dir is None:
        args.model_dir = "work/runs/%s" % args.network
    return args


def parse_config(argv=None):
    """The `TrainConfig` of a command line (``parse_args`` checks it first)."""
    return TrainConfig.from_args(parse_args(argv))
