#!/bin/sh
# DPN-131 as the reference trained it for M12 (dataset B there, val-acc 0.7424), from ImageNet-1k
# weights: train/recipes.py's "dpn131" recipe, in $RUNS_DIR/dpn131_$DATASET. (M08 trained it with NAG
# instead: sh shell/train_all.sh M08.)
#   sh shell/train_dpn131.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe dpn131 "$@"
