#!/bin/sh
# DPN-107 as the reference's M14 (dataset A, val-acc 0.7438, the best single model): the
# ImageNet-5k-pretrained, 1k-fine-tuned weights ("dpn107-extra"), NAdam lr 1e-4, x0.2 at epochs 10,
# 13 and 17, 20 epochs, batch 384, label smoothing 0.1, random mirror.
#   sh shell/train_dpn107.sh [train.py arguments...]    (settings: see shell/train_common.sh)
set -eu
NETWORK=dpn107
DATASET=${DATASET:-A}
BATCH_SIZE=${BATCH_SIZE:-384}
NUM_EPOCHS=${NUM_EPOCHS:-20}
PRETRAINED_FILE=dpn107-extra-0000.params
. "$(dirname "$0")/train_common.sh"
train --optimizer nadam --lr 1e-4 --lr-factor 0.2 --lr-step-epochs 10,13,17 --label-smoothing 0.1 "$@"
