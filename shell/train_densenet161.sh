#!/bin/sh
# DenseNet-161 as the reference's M04 (dataset A, val-acc 0.7269): ImageNet-1k weights (GluonCV),
# NAdam lr 1e-4, x0.2 at epochs 10, 14 and 17, 20 epochs, batch 512, label smoothing 0.1, random
# mirror; global average pooling instead of the fixed 7x7 one (which fails at 180x180).
#   sh shell/train_densenet161.sh [train.py arguments...]  (settings: see shell/train_common.sh)
set -eu
NETWORK=densenet161
DATASET=${DATASET:-A}
BATCH_SIZE=${BATCH_SIZE:-512}
NUM_EPOCHS=${NUM_EPOCHS:-20}
PRETRAINED_FILE=densenet161.params
. "$(dirname "$0")/train_common.sh"
train --optimizer nadam --lr 1e-4 --lr-factor 0.2 --lr-step-epochs 10,14,17 --label-smoothing 0.1 "$@"
