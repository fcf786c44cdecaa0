#!/bin/sh
# ResNeXt-101 64x4d as the reference trained it for M07 (dataset A, val-acc 0.7358) and M09
# (dataset B, 0.7374), from GluonCV's ImageNet-1k weights: train/recipes.py's "resnext101_64x4d"
# recipe, in $RUNS_DIR/resnext101_64x4d_$DATASET. Parent of the SE-ResNeXt runs.
#   sh shell/train_resnext101_64x4d.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe resnext101_64x4d "$@"
