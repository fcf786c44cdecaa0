#!/bin/sh
# DPN-98 as the reference trained it for M05 (dataset A, val-acc 0.7326), from ImageNet-1k
# weights: train/recipes.py's "dpn98" recipe, in $RUNS_DIR/dpn98_$DATASET.
#   sh shell/train_dpn98.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe dpn98 "$@"
