#!/bin/sh
# DPN-92 as the reference trained it for M06 (dataset A, val-acc 0.7345), from ImageNet-1k
# weights: train/recipes.py's "dpn92" recipe, in $RUNS_DIR/dpn92_$DATASET.
#   sh shell/train_dpn92.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe dpn92 "$@"
