"""Score a submission as Kaggle scored Cdiscount, beside the validation accuracy of the same ensemble.

    python predict/score.py --submission work/submission.csv.gz --solution work/synth/test_solution.csv \\
        --val-preds work/preds/A_val/* --categories category_names.csv --md5-mode unique \\
        --product-hash-dict work/rec/A_train.md5.npz

Kaggle's metric for the challenge was the categorisation accuracy over the test products:
the share of the solution's products (``_id,category_id``, as ``data.synth`` writes the
synthetic ``test_solution.csv``) whose submitted ``category_id`` is theirs; a product the
submission leaves out counts as wrong, and a submission naming a product the solution does
not hold is refused. With ``--val-preds``, the same ensemble (arithmetic mean, variant,
product-hash post-processing) is scored on the validation predictions: the product
accuracy the submission's score can be held against. A user error ends with one line,
``score: error: ...``.
"""
import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # Run as `python predict/score.py`: Python put predict/ first on sys.path, where
    # predict/predict.py would shadow the `predict` package. The checkout's root takes its
    # place, so that the package is found, installed or not.
    sys.path[0] = os.path.dirname(sys.path[0])

import argparse  # noqa: E402
import csv  # noqa: E402
import gzip  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from data.categories import CategoryMap  # noqa: E402
from data.cli import UserError, add_common_options, command, setup_logging  # noqa: E402
from predict.ensembling import (accuracy, load_predictions, product_hash_classes, submission_classes,  # noqa: E402
                                submission_compressed, variant_for)


def read_rows(path):
    """``{_id: category_id}`` of a submission or solution CSV (``.csv`` or ``.csv.gz``),
    checked: the header ``_id,category_id``, two integers a row, each ``_id`` once."""
    opener = gzip.open if submission_compressed(path) else open
    with opener(path, "rt", encoding="ascii", newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["_id", "category_id"]:
        raise UserError(f"{path}: the first line must be _id,category_id")
    found = {}
    for number, row in enumerate(rows[1:], 2):
        try:
            product, category = (int(value) for value in row)
        except ValueError:
            raise UserError(f"{path}: line {number} is not two integers: {','.join(row)}") from None
        if product in found:
            raise UserError(f"{path}: line {number}: product {product} appears more than once")
        found[product] = category
    return found


@dataclass(frozen=True)
class Score:
    correct: int
    products: int       # the solution's
    missing: int        # the solution's products the submission leaves out

    @property
    def accuracy(self):
        return self.correct / self.products if self.products else float("nan")


def kaggle_score(submission, solution):
    """The `Score` of `submission` against `solution` (``{_id: category_id}`` both)."""
    unknown = sorted(set(submission) - set(solution))
    if unknown:
        raise UserError(f"the submission names {len(unknown)} products the solution does not hold (first: "
                        f"{unknown[0]}): Kaggle would refuse it")
    correct = sum(1 for product, category in solution.items() if submission.get(product) == category)
    return Score(correct, len(solution), len(set(solution) - set(submission)))


def validation_accuracy(folders, categories, combiner=None, md5_mode=None, hash_dictionary=None):
    """``(product accuracy, products)`` of the mean ensemble of the labelled prediction
    `folders` in the variant of `combiner` x `md5_mode`, product hash applied with
    `hash_dictionary` (a ``data.md5_dict.Md5Dictionary``) when given: what
    ``predict/ensemble.py --submission`` would submit, held against the labels."""
    preds = load_predictions(folders)
    if not preds[0].has_labels:
        raise UserError(f"{preds[0].folder} has no labels: --val-preds takes validation predictions")
    hash_classes = None if hash_dictionary is None else product_hash_classes(preds[0].product_hash,
                                                                             hash_dictionary, categories)
    classes, _ = submission_classes(preds, variant_for(preds, combiner, md5_mode), "mean", None, hash_classes,
                                    progress=False)
    return accuracy(classes, preds[0].labels), len(classes)


def build_parser():
    p = argparse.ArgumentParser(prog="score", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--submission", required=True, help="the submission (.csv or .csv.gz: _id,category_id)")
    p.add_argument("--solution", required=True, help="the solution (.csv or .csv.gz: _id,category_id)")
    p.add_argument("--val-preds", nargs="+", default=[], help="validation prediction folders of the same models")
    p.add_argument("--categories", help="category_names.csv (with --val-preds)")
    p.add_argument("--combiner", help="per-product combiner of the validation variant (default: the first stored)")
    p.add_argument("--md5-mode", help="image MD5 mode of the validation variant (default: the first stored)")
    p.add_argument("--product-hash-dict", help="MD5 dictionary of the validation side's training products")
    add_common_options(p)
    return p


@command("score")
def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.val_preds and not args.categories:
        raise UserError("--val-preds needs --categories")
    score = kaggle_score(read_rows(args.submission), read_rows(args.solution))
    print(f"Kaggle score of {args.submission}: {score.accuracy:.5f} (accuracy over the {score.products} products "
          f"of {os.path.basename(args.solution)}; {score.missing} left out)")
    if args.val_preds:
        categories = CategoryMap.from_csv(args.categories)
        dictionary = None
        if args.product_hash_dict:
            from data.md5_dict import Md5Dictionary
            dictionary = Md5Dictionary.load(args.product_hash_dict)
        value, products = validation_accuracy(args.val_preds, categories, args.combiner, args.md5_mode, dictionary)
        print(f"validation product accuracy of the same ensemble: {value:.5f} ({products} products)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
