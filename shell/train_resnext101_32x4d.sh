#!/bin/sh
# ResNeXt-101 32x4d as the reference's M10 (dataset A, val-acc 0.7385): ImageNet-1k weights
# (GluonCV), NAdam lr 1e-4, x0.2 at epochs 6, 8 and 10, 19 epochs, batch 512, label smoothing 0.1,
# random mirror. (M01 on dataset C: see shell/train_all.sh.)
#   sh shell/train_resnext101_32x4d.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
NETWORK=resnext101_32x4d
DATASET=${DATASET:-A}
BATCH_SIZE=${BATCH_SIZE:-512}
NUM_EPOCHS=${NUM_EPOCHS:-19}
PRETRAINED_FILE=resnext101_32x4d.params
. "$(dirname "$0")/train_common.sh"
train --optimizer nadam --lr 1e-4 --lr-factor 0.2 --lr-step-epochs 6,8,10 --label-smoothing 0.1 "$@"
