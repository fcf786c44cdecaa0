#!/bin/sh
# SE-ResNeXt-101 64x4d started from a ResNeXt-101 64x4d run of the same dataset (its layers and
# classifier are copied, the squeeze-excitation layers start fresh), in phases as the reference ran
# it for RECIPE (train/recipes.py's):
#   M13 (default; dataset B there, val-acc 0.7432): 2 phases, to epochs 11 and 13.
#   M11 (dataset A there, val-acc 0.7393): 3 phases, to epochs 4, 10 and 15.
#   sh shell/train_se_resnext101_64x4d.sh [train.py arguments...]  (settings: see shell/train_common.sh)
# Run folder $RUNS_DIR/se_resnext101_64x4d_$DATASET. PARENT: the ResNeXt-101 64x4d run folder
# [$RUNS_DIR/resnext101_64x4d_$DATASET, the folder shell/train_resnext101_64x4d.sh trains]. Each
# phase resumes, so the script can be re-run after an interruption.
set -eu
RECIPE=${RECIPE:-M13}
case "$RECIPE" in
    M11|M13) ;;
    *) echo "train_se_resnext101_64x4d: unknown RECIPE $RECIPE (M11 or M13)" >&2; exit 1 ;;
esac
. "$(dirname "$0")/train_common.sh"
run_recipes --recipe "$RECIPE" --run-names network "$@"
