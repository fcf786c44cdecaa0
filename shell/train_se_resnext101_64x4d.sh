#!/bin/sh
# SE-ResNeXt-101 64x4d started from a ResNeXt-101 64x4d run of the same dataset: its layers and
# classifier are copied, the squeeze-excitation layers start fresh. Batch 512, in phases as the
# reference ran it (RECIPE):
#   M13 (default; dataset B there, val-acc 0.7432): NAdam lr 1e-4, x0.2 at epochs 4, 7 and 9,
#       label smoothing 0.1, dropout 0.2; epochs 1-11 with random mirror and HSL jitter 20/20/20,
#       epochs 12-13 without augmentation.
#   M11 (dataset A there, val-acc 0.7393): epochs 1-4 Adam lr 5e-5 without label smoothing (the
#       reference's code had none yet); epochs 5-10 NAdam lr 1e-4, x0.2 at 4, 6 and 8, smoothing
#       0.1; epochs 11-15 x0.2 at 4, 6 and 13, HSL jitter 20/20/20, dropout 0.2.
#   sh shell/train_se_resnext101_64x4d.sh [train.py arguments...]  (settings: see shell/train_common.sh)
# PARENT: the ResNeXt-101 64x4d run folder [$RUNS_DIR/resnext101_64x4d_$DATASET, the folder
# shell/train_resnext101_64x4d.sh trains]. The phase lengths are the reference's (NUM_EPOCHS is
# not used); each phase resumes, so the script can be re-run after an interruption.
set -eu
NETWORK=se_resnext101_64x4d
RECIPE=${RECIPE:-M13}
case "$RECIPE" in
    M13) DATASET=${DATASET:-B} ;;
    M11) DATASET=${DATASET:-A} ;;
    *) echo "train_se_resnext101_64x4d: unknown RECIPE $RECIPE (M11 or M13)" >&2; exit 1 ;;
esac
BATCH_SIZE=${BATCH_SIZE:-512}
NUM_EPOCHS=0
PRETRAINED=${PRETRAINED-}
PRETRAINED_FILE=
. "$(dirname "$0")/train_common.sh"
PARENT=${PARENT:-$RUNS_DIR/resnext101_64x4d_$DATASET}
HSL="--max-random-h 20 --max-random-s 20 --max-random-l 20"

# shellcheck disable=SC2086  # $HSL is a list of plain words
if [ "$RECIPE" = M13 ]; then
    NUM_EPOCHS=11
    train --from-run "$PARENT" --optimizer nadam --lr 1e-4 --lr-step-epochs 4,7,9 --label-smoothing 0.1 \
        --dropout 0.2 --random-mirror 1 $HSL "$@"
    NUM_EPOCHS=13
    train --load-epoch 11 --optimizer nadam --lr 1e-4 --lr-step-epochs 4,7,9 --label-smoothing 0.1 \
        --dropout 0.2 --random-mirror 0 "$@"
else
    NUM_EPOCHS=4
    train --from-run "$PARENT" --optimizer adam --lr 5e-5 --label-smoothing 0 "$@"
    NUM_EPOCHS=10
    train --load-epoch 4 --optimizer nadam --lr 1e-4 --lr-step-epochs 4,6,8 --label-smoothing 0.1 "$@"
    NUM_EPOCHS=15
    train --load-epoch 10 --optimizer nadam --lr 1e-4 --lr-step-epochs 4,6,13 --label-smoothing 0.1 \
        --dropout 0.2 $HSL "$@"
fi
