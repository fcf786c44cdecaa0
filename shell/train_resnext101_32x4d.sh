#!/bin/sh
# ResNeXt-101 32x4d as the reference trained it for M10 (dataset A, val-acc 0.7385), from GluonCV's
# ImageNet-1k weights: train/recipes.py's "resnext101_32x4d" recipe, in
# $RUNS_DIR/resnext101_32x4d_$DATASET. (M01 on dataset C: sh shell/train_all.sh M01.)
#   sh shell/train_resnext101_32x4d.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe resnext101_32x4d "$@"
