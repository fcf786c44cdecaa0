#!/bin/sh
# DPN-98 as the reference's M05 (dataset A, val-acc 0.7326): ImageNet-1k weights, NAdam
# lr 1e-4, x0.2 at epochs 6, 10 and 13, 15 epochs, batch 512, label smoothing 0.1, random mirror.
#   sh shell/train_dpn98.sh [train.py arguments...]     (settings: see shell/train_common.sh)
set -eu
NETWORK=dpn98
DATASET=${DATASET:-A}
BATCH_SIZE=${BATCH_SIZE:-512}
NUM_EPOCHS=${NUM_EPOCHS:-15}
PRETRAINED_FILE=dpn98-0000.params
. "$(dirname "$0")/train_common.sh"
train --optimizer nadam --lr 1e-4 --lr-factor 0.2 --lr-step-epochs 6,10,13 --label-smoothing 0.1 "$@"
