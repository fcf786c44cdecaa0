"""Ensemble prediction folders into a Kaggle submission and/or the validation-accuracy table.

    # validation: accuracy table of every model, combiner, MD5 mode and ensemble
    python predict/ensemble.py --preds work/preds/A_val/* --categories category_names.csv \\
        --product-hash-dict work/rec/A_train.md5.npz --table-out work/report/accuracy \\
        --logs ../shared/real/reference_logs/*.log

    # test: submission.csv.gz with one row per test product
    python predict/ensemble.py --preds work/preds/test/* --categories category_names.csv \\
        --submission work/submission.csv.gz --product-hash-dict work/rec/train.md5.npz

The ensemble averages the per-product probabilities of the folders (arithmetic or
geometric mean, optional weights) of one variant (combiner and image-MD5 mode stored by
predict.py), then, with a product-hash dictionary, overwrites the prediction of every
product whose product hash belongs to training products of one single category.

The submission's format follows its suffix (``.csv.gz`` gzip, ``.csv`` plain). It must hold
every product of the input: when predict could not read some documents (``--skip-bad``)
and gave them no row, the submission is refused, naming how many and where, unless
``--allow-missing``; predictions of no product are refused too. A user error ends with one
line, ``ensemble: error: ...`` (the traceback with ``--debug``).
"""
import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # Run as `python predict/ensemble.py`: Python put predict/ first on sys.path, where
    # predict/predict.py would shadow the `predict` package. The checkout's root takes its
    # place, so that the package is found, installed or not.
    sys.path[0] = os.path.dirname(sys.path[0])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402

from data.atomic import exclusive_output  # noqa: E402
from data.categories import CategoryMap  # noqa: E402
from data.cli import UserError, add_common_options, command, setup_logging  # noqa: E402
from predict.combine import ENSEMBLE_METHODS  # noqa: E402
from predict.ensembling import (describe_missing, evaluate, load_predictions, missing_documents,  # noqa: E402
                                naming_errors, product_hash_classes, submission_classes, submission_compressed,
                                variant_for, write_submission)
from models.training_log import read_training_logs  # noqa: E402
from predict.table import log_section, model_sections, reference_sections, to_markdown, write_table  # noqa: E402

log = logging.getLogger("predict.ensemble")


def build_parser():
    p = argparse.ArgumentParser(prog="ensemble", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preds", nargs="+", default=[], help="prediction folders of predict.py (one per model)")
    p.add_argument("--categories", help="category_names.csv (required with --preds)")
    p.add_argument("--method", choices=ENSEMBLE_METHODS, default="mean",
                   help="submission ensemble: arithmetic or geometric mean (default mean)")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per --preds folder (default equal)")
    p.add_argument("--combiner", help="per-product combiner of the variant to use (default: the first stored)")
    p.add_argument("--md5-mode", help="image MD5 mode of the variant to use (default: the first stored)")
    p.add_argument("--product-hash-dict", help="MD5 dictionary of the training products (data.md5_dict): "
                                               "product-hash post-processing")
    p.add_argument("--submission", help="write the Kaggle submission here (.csv.gz gzip, .csv plain)")
    p.add_argument("--allow-missing", action="store_true",
                   help="write the submission even when products of the input have no prediction (predict --skip-bad "
                        "could not read their documents)")
    p.add_argument("--table-out", help="write the validation table to this prefix (.md and .png)")
    p.add_argument("--logs", nargs="+", default=[], help="MXNet training logs to add to the table")
    add_common_options(p)
    return p


def table_prefix(path):
    stem, ext = os.path.splitext(path)
    return stem if ext in (".md", ".png") else path


def check_complete(preds, submission, allow_missing):
    """Refuse a submission of no product, or one that would miss products of the input."""
    if len(preds[0]) == 0:
        raise UserError(f"{preds[0].folder}: predictions of no product: refusing an empty submission")
    missing = missing_documents(preds)
    if not missing:
        return
    text = f"{submission} would miss {describe_missing(missing)}: predict could not read their documents"
    if not allow_missing:
        raise UserError(f"{text}; --allow-missing writes it anyway")
    log.warning("%s (--allow-missing)", text)


@command("ensemble")
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if not args.preds and not args.logs:
        parser.error("give --preds and/or --logs")
    if args.submission and not args.preds:
        parser.error("--submission needs --preds")
    if args.preds and not args.categories:
        parser.error("--preds needs --categories")
    if args.weights and len(args.weights) != len(args.preds):
        parser.error(f"--weights gives {len(args.weights)} weights for {len(args.preds)} folders")
    with contextlib.ExitStack() as locks:
        if args.submission:
            submission_compressed(args.submission)              # the suffix is checked before any work
            with naming_errors(args.submission, "the submission"):
                locks.enter_context(exclusive_output(args.submission))
        write_outputs(args)


def write_outputs(args):
    """The submission and/or the accuracy table the arguments ask for."""
    sections = []
    if args.preds:
        categories = CategoryMap.from_csv(args.categories)
        preds = load_predictions(args.preds)
        if preds[0].classes != len(categories):
            raise UserError(f"{preds[0].folder} holds {preds[0].classes} classes but {args.categories} "
                            f"has {len(categories)} categories")
        hash_classes = None
        if args.product_hash_dict:
            from data.md5_dict import Md5Dictionary
            hash_classes = product_hash_classes(preds[0].product_hash, Md5Dictionary.load(args.product_hash_dict),
                                                categories)
            log.info("product hash: %d of %d products match training products of one category",
                     int((hash_classes >= 0).sum()), len(hash_classes))
        if args.submission:
            check_complete(preds, args.submission, args.allow_missing)
            variant = variant_for(preds, args.combiner, args.md5_mode)
            classes, changed = submission_classes(preds, variant, args.method, args.weights, hash_classes,
                                                  progress=args.progress)
            write_submission(args.submission, preds[0].ids, classes, categories)
            log.info("%s: %d products (%d models, %s mean of %s, %d changed by the product hash)", args.submission,
                     len(classes), len(preds), args.method, variant, changed)
        if preds[0].has_labels:
            sections += model_sections(evaluate(preds, hash_classes, args.weights, combiner=args.combiner,
                                                progress=args.progress))
        elif args.table_out:
            raise UserError(f"{preds[0].folder} has no labels: the accuracy table needs validation predictions")
        elif not args.submission and not args.logs:
            raise UserError(f"{preds[0].folder} has no labels (predictions of a test file): without --submission FILE "
                            "there is nothing to write")
    if args.logs:
        sections.append(log_section(read_training_logs(args.logs)))
    if sections:
        if args.table_out:
            write_table(table_prefix(args.table_out), sections)
            log.info("wrote %s.md and %s.png", table_prefix(args.table_out), table_prefix(args.table_out))
        print(to_markdown(sections + reference_sections()))


if __name__ == "__main__":
    main()
