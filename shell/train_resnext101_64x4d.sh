#!/bin/sh
# ResNeXt-101 64x4d as the reference's M07 (dataset A, val-acc 0.7358) and M09 (dataset B,
# 0.7374): ImageNet-1k weights (GluonCV), NAdam lr 1e-4, x0.2 at epochs 6, 10 and 13, 15 epochs,
# batch 512, label smoothing 0.1, random mirror. Parent of the SE-ResNeXt runs.
#   sh shell/train_resnext101_64x4d.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
NETWORK=resnext101_64x4d
DATASET=${DATASET:-A}
BATCH_SIZE=${BATCH_SIZE:-512}
NUM_EPOCHS=${NUM_EPOCHS:-15}
PRETRAINED_FILE=resnext101_64x4d.params
. "$(dirname "$0")/train_common.sh"
train --optimizer nadam --lr 1e-4 --lr-factor 0.2 --lr-step-epochs 6,10,13 --label-smoothing 0.1 "$@"
