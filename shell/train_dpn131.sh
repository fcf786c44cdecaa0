#!/bin/sh
# DPN-131 as the reference's M12 (dataset B there, val-acc 0.7424): ImageNet-1k weights, NAdam
# lr 1e-4, x0.2 at epochs 10, 13 and 15, 17 epochs, batch 384, label smoothing 0.1, random mirror.
# (M08 trained it with NAG lr 0.005 instead: see shell/train_all.sh.)
#   sh shell/train_dpn131.sh [train.py arguments...]    (settings: see shell/train_common.sh)
set -eu
NETWORK=dpn131
DATASET=${DATASET:-A}
BATCH_SIZE=${BATCH_SIZE:-384}
NUM_EPOCHS=${NUM_EPOCHS:-17}
PRETRAINED_FILE=dpn131-0000.params
. "$(dirname "$0")/train_common.sh"
train --optimizer nadam --lr 1e-4 --lr-factor 0.2 --lr-step-epochs 10,13,15 --label-smoothing 0.1 "$@"
