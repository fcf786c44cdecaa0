#!/bin/sh
# DPN-107 as the reference trained it for M14 (dataset A, val-acc 0.7438, the best single model),
# from the ImageNet-5k-pretrained, 1k-fine-tuned weights ("dpn107-extra"): train/recipes.py's
# "dpn107" recipe, in $RUNS_DIR/dpn107_$DATASET.
#   sh shell/train_dpn107.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe dpn107 "$@"
