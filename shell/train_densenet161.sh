#!/bin/sh
# DenseNet-161 as the reference trained it for M04 (dataset A, val-acc 0.7269), from GluonCV's
# ImageNet-1k weights: train/recipes.py's "densenet161" recipe, in $RUNS_DIR/densenet161_$DATASET.
#   sh shell/train_densenet161.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe densenet161 "$@"
