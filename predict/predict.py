"""Predict a BSON or .rec file with trained models: one prediction folder per model.

    python predict/predict.py --input work/rec/A_val.rec --models work/runs/dpn_tiny work/runs/resnext_tiny \\
        --categories category_names.csv --out work/preds/A_val --decoders 2 --batch-size 64 --tta flip \\
        --md5-dict work/rec/A_train.md5.npz --md5-mode none,unique --combiners all

Writes ``<out>/<model name>/`` (see predict.outputs): per-product float16 probabilities of
every variant (combiner x MD5 mode), top classes, product ids, labels, product hashes and
a manifest with the accuracies when the input is labelled. ``--decoders 0`` runs
everything in this process, without ZeroMQ.

Each model gets its input as its checkpoint says (``image_shape``, ``mean``, ``scale`` of
its epoch-NNNN.json; data.images), so models of different input sizes predict in one run;
there is no ``--image-size`` any more.

Each model runs on its run's framework (MXNet for Gluon runs, PyTorch for PyTorch runs:
the twins of the reference's networks, whose weights MXNet reads too, and timm's networks,
which run on PyTorch only),
in model workers of its own (MXNet and PyTorch never share a process), so runs of both
predict in one command; or every model runs on ``--backend``'s: ``--backend torch``
converts Gluon runs on load and runs them on PyTorch (bf16 and channels_last on GPUs;
``--compile``: ``torch.compile``), the way to predict on H100/H200 GPUs, which MXNet 1.9.1
cannot use. PyTorch model workers can also decode the pictures themselves, a batch at a
time on their device (``--decode-on device``: nvJPEG on GPUs), which frees the CPU cores
of the decoders.

Every product whose ``_id`` can be read gets a row. One without any decodable picture
(``--skip-bad-images``), or a test document that could not be read but whose ``_id`` could
(``--skip-bad``), gets the training class prior, whose top class is the most frequent
class of the model's training side: the ``class_histogram`` of that side's conversion
report, found through the checkpoint's ``--data-train`` or given with ``--class-prior``
(uniform when neither is there). ``manifest.json`` counts them (``fallback``) and lists
the documents that could not be read (``skipped_documents``); a user error ends with one
line, ``predict: error: ...`` (the traceback with ``--debug``).
"""
import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # Run as `python predict/predict.py`: Python put predict/ first on sys.path, where this
    # file would shadow the `predict` package. The checkout's root takes its place, so that
    # `import predict.x` finds the package, installed or not.
    sys.path[0] = os.path.dirname(sys.path[0])

import argparse  # noqa: E402
import json  # noqa: E402

from data.categories import CategoryMap  # noqa: E402
from data.cli import (OldSpelling, add_common_options, add_device_options, add_skip_bad_option, command,  # noqa: E402
                      positive_float, positive_int, setup_logging)
from predict.combine import COMBINERS, parse_combiners  # noqa: E402
from predict.decode import DECODE_ON, TTA_CHOICES, Views  # noqa: E402
from models.backends import BACKENDS, backend_names, backends_with, compiler_problem  # noqa: E402
from predict.checkpoints import CheckpointModel  # noqa: E402
from predict.md5_modes import MD5_MODES, parse_md5_modes  # noqa: E402
from predict.pipeline import TRANSPORTS, PipelineConfig  # noqa: E402
from predict.run import predict_input  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog="predict", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="a .bson (test.bson, or a train BSON) or a .rec of data.bson2rec")
    p.add_argument("--models", nargs="+", required=True, help="training runs (runs/<run>) or epoch-NNNN.params files")
    p.add_argument("--load-epoch", dest="epoch", type=int,
                   help="checkpoint epoch of every run (default: the run's latest)")
    p.add_argument("--epoch", dest="epoch", action=OldSpelling, new_option="--load-epoch", new_type=int,
                   default=argparse.SUPPRESS, help="the older spelling of --load-epoch")
    p.add_argument("--names", nargs="+", help="output folder name per model (default: the run folder's name)")
    p.add_argument("--categories", help="category_names.csv (labels of a train BSON, MD5 modes)")
    p.add_argument("--out", required=True, help="output folder; each model writes <out>/<name>/")
    p.add_argument("--decoders", type=int, default=2, help="decoder processes (0: everything in-process)")
    p.add_argument("--decode-on", choices=DECODE_ON, default="decoders",
                   help="where pictures are decoded: decoders (default: the decoder processes, OpenCV) or device "
                        "(the model worker's, a batch at a time: nvJPEG on GPUs, libjpeg-turbo on the CPU; the "
                        "decoders still take the MD5s and check each picture). Model workers of %s only"
                        % " or ".join(backends_with(lambda b: b.decodes_on_device)))
    p.add_argument("--batch-size", type=positive_int, default=64, help="network inputs (images x views) per batch")
    p.add_argument("--tta", default="flip", choices=TTA_CHOICES, help="test-time views (default flip)")
    p.add_argument("--crop-size", type=int, default=160, help="size of the 5 crops of --tta crops")
    p.add_argument("--md5-dict", help="MD5 dictionary of the training images (data.md5_dict)")
    p.add_argument("--md5-mode", default="none",
                   help=f"image MD5 mode(s), comma-separated, each stored: {', '.join(MD5_MODES)}")
    p.add_argument("--combiners", default="mean",
                   help=f"per-product combiner(s), comma-separated, or 'all': {', '.join(COMBINERS)}")
    p.add_argument("--top-k", type=positive_int, default=5, help="top classes stored per product and variant")
    add_skip_bad_option(p, "skip corrupt BSON documents (listed in manifest.json; a test product whose _id is "
                           "readable keeps its row, with the fallback)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave undecodable images out of their product (reported) instead of stopping; a "
                        "product left without any gets the fallback")
    p.add_argument("--class-prior", metavar="REPORT",
                   help="the training side's conversion report (X_train.report.json) whose class histogram is "
                        "the fallback of products without a decodable picture (default: the checkpoint's)")
    p.add_argument("--transport", choices=TRANSPORTS, default="ipc", help="ZeroMQ transport (default ipc)")
    p.add_argument("--queue-size", type=positive_int, default=32, help="ZeroMQ high-water mark (messages) per socket")
    p.add_argument("--stall-timeout", type=positive_float, default=300,
                   help="fail when no product completes for this many seconds")
    add_device_options(p, help_text="one model worker per device: cpu, gpu:0,gpu:1, ...")
    p.add_argument("--backend", choices=backend_names(),
                   help="backend of every model worker (default: each run's own, in model workers of its own; "
                        "mxnet for Gluon runs); torch converts Gluon runs on load and runs bf16 + channels_last "
                        "on GPUs")
    p.add_argument("--compile", action="store_true",
                   help="compile every network (--backend %s)" % " or ".join(backends_with(lambda b: b.compiles)))
    p.add_argument("--ema", action="store_true",
                   help="predict with the moving average of each run's weights (trained with --ema-decay)")
    add_common_options(p)
    return p


@command("predict")
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if args.names and len(args.names) != len(args.models):
        parser.error(f"--names gives {len(args.names)} names for {len(args.models)} models")
    names = args.names or [None] * len(args.models)
    if args.compile and (args.backend is None or not BACKENDS[args.backend].compiles):
        parser.error("--compile needs --backend %s" % " or ".join(backends_with(lambda b: b.compiles)))
    if args.compile and (problem := compiler_problem()):
        parser.error(problem)
    handles = [CheckpointModel(path, args.epoch, name, args.class_prior, args.backend, args.compile, args.ema)
               for path, name in zip(args.models, names)]
    config = PipelineConfig(decoders=args.decoders, batch_size=args.batch_size,
                            views=Views.parse(args.tta, args.crop_size),
                            devices=args.devices, transport=args.transport,
                            queue_size=args.queue_size, stall_timeout=args.stall_timeout,
                            skip_bad_images=args.skip_bad_images, progress=args.progress,
                            decode_on=args.decode_on)
    categories = CategoryMap.from_csv(args.categories) if args.categories else None
    combiners = parse_combiners(",".join(COMBINERS) if args.combiners == "all" else args.combiners)
    manifests = predict_input(args.input, handles, args.out, config, categories, combiners,
                              parse_md5_modes(args.md5_mode), args.md5_dict, args.top_k, args.skip_bad)
    for m in manifests:
        summary = {k: m.get(k) for k in ("name", "products", "images", "products_per_second", "image_accuracy",
                                          "product_accuracy")}
        summary["fallback_products"] = m["fallback"]["products"]
        print(json.dumps(summary, indent=2))
    for problem in manifests[0]["problems"] if manifests else ():
        print(f"skipped image: {problem}", file=sys.stderr)


if __name__ == "__main__":
    main()
