#!/bin/sh
# Train the reference's 14 models, M01-M14, each with its network, dataset, parent and phases
# (train/recipes.py; list them with `python train/train.py --recipe all --help`):
#   sh shell/train_all.sh [M01 M02 ...] [train.py arguments...]   (default: all, parents first)
# Run folders: $RUNS_DIR/Mxx_<network>; M11 starts from M07's, M13 from M09's. Every phase resumes,
# so the whole list can be re-run after an interruption. Settings (DEVICES or GPUS, BATCH_SIZE, GRAD_ACCUM,
# REC_DIR, NUM_EPOCHS, ...): see shell/train_common.sh; DATASET, MODEL_DIR and PARENT are each
# model's own here.
set -eu
. "$(dirname "$0")/train_common.sh"
unset DATASET MODEL_DIR PARENT
case "${1:-}" in ""|-*) set -- all "$@" ;; esac
run_recipes --recipe "$@"
