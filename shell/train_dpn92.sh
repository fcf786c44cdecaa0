#!/bin/sh
# DPN-92 as the reference's M06 (dataset A, val-acc 0.7345): ImageNet-1k weights, NAdam
# lr 1e-4, x0.2 at epochs 8 and 10, 11 epochs, batch 512, label smoothing 0.1, random mirror.
#   sh shell/train_dpn92.sh [train.py arguments...]     (settings: see shell/train_common.sh)
set -eu
NETWORK=dpn92
DATASET=${DATASET:-A}
BATCH_SIZE=${BATCH_SIZE:-512}
NUM_EPOCHS=${NUM_EPOCHS:-11}
PRETRAINED_FILE=dpn92-0000.params
. "$(dirname "$0")/train_common.sh"
train --optimizer nadam --lr 1e-4 --lr-factor 0.2 --lr-step-epochs 8,10 --label-smoothing 0.1 "$@"
