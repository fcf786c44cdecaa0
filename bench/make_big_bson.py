"""Write a synthetic Cdiscount dataset whose train.bson has about a requested size.

For benchmarks of the BSON index, the split and bson2rec on multi-GB inputs, e.g.
`python bench/make_big_bson.py --out /tmp/big --gb 1` (about 120,000 products with 5,270
categories). The generator streams, so memory stays bounded whatever the size.
"""
import argparse
import math

from bench_common import ROOT  # noqa: F401  (the checkout on sys.path)
from data import synth


def products_for_size(target_bytes, options):
    """Number of train products that makes train.bson about `target_bytes` long."""
    return max(1, math.ceil(target_bytes / synth.estimate_bytes_per_product(options)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--gb", type=float, default=1.0, help="target size of train.bson in GB (1e9 bytes)")
    parser.add_argument("--test-products", type=int, default=1000)
    parser.add_argument("--categories", type=int, default=5270, help="Kaggle's count by default")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    options = synth.SynthOptions(test_products=args.test_products, categories=args.categories, seed=args.seed)
    train_products = products_for_size(args.gb * 1e9, options)
    print(f"{train_products:,} train products for about {args.gb:g} GB")
    summary = synth.generate(args.out, options, train_products=train_products)
    print(synth.format_summary(summary))


if __name__ == "__main__":
    main()
