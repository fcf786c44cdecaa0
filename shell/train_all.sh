#!/bin/sh
# Train the reference's 14 models, M01-M14, with their datasets and parents:
#
#   No.  network               dataset  start from          recipe (beyond train_<network>.sh defaults)
#   M01  ResNeXt-101 32x4d     C        ImageNet            no label smoothing, x0.2 at 8 and 11, 23 epochs
#   M02  DPN-92                C        ImageNet            x0.2 at 6 and 10, 13 epochs
#   M03  DPN-92                C        ImageNet            as M02, another seed
#   M04  DenseNet-161          A        ImageNet            train_densenet161.sh
#   M05  DPN-98                A        ImageNet            train_dpn98.sh
#   M06  DPN-92                A        ImageNet            train_dpn92.sh
#   M07  ResNeXt-101 64x4d     A        ImageNet            train_resnext101_64x4d.sh
#   M08  DPN-131               A        ImageNet            NAG lr 0.005 (weight decay 4e-5), x0.2 at 10, 13, 16, 18 epochs
#   M09  ResNeXt-101 64x4d     B        ImageNet            train_resnext101_64x4d.sh
#   M10  ResNeXt-101 32x4d     A        ImageNet            train_resnext101_32x4d.sh
#   M11  SE-ResNeXt-101 64x4d  A        M07 (see below)     train_se_resnext101_64x4d.sh RECIPE=M11 (3 phases)
#   M12  DPN-131               B        ImageNet            train_dpn131.sh
#   M13  SE-ResNeXt-101 64x4d  B        M09                 train_se_resnext101_64x4d.sh (RECIPE=M13, 2 phases)
#   M14  DPN-107               A        ImageNet            train_dpn107.sh
#
# M11's parent: REFERENCE.md's table says M10, but M11's log loads
# "resnext-101-64x4d/resnext-101-64x4d-0015.params" trained on dataset A: a ResNeXt-101 64x4d after
# 15 epochs, i.e. M07 (M10, at ~580 img/s, is the 32x4d network, whose shapes an SE-ResNeXt-101
# 64x4d cannot take).
#
#   sh shell/train_all.sh [M01 M02 ...]     (default: all, in an order that trains parents first)
# Run folders: $RUNS_DIR/Mxx_<network>. Every script resumes, so the whole list can be re-run after
# an interruption. Settings (GPUS, BATCH_SIZE, GRAD_ACCUM, REC_DIR, ...): see shell/train_common.sh;
# NUM_EPOCHS, DATASET, MODEL_DIR, PARENT and RECIPE are set here per model.
set -eu
SHELL_DIR=$(dirname "$0")
RUNS_DIR=${RUNS_DIR:-work/runs}
export RUNS_DIR

run() {  # run MODEL NETWORK DATASET [VAR=value ...] COMMAND [ARGUMENTS ...]
    model=$1 network=$2 dataset=$3
    shift 3
    echo "$(date '+%Y-%m-%d %H:%M:%S') train_all: $model ($network, dataset $dataset)" >&2
    env MODEL_DIR="$RUNS_DIR/${model}_$network" DATASET="$dataset" "$@"
}

model_M01() { run M01 resnext101_32x4d C NUM_EPOCHS=23 sh "$SHELL_DIR/train_resnext101_32x4d.sh" --label-smoothing 0 --lr-step-epochs 8,11; }
model_M02() { run M02 dpn92 C NUM_EPOCHS=13 sh "$SHELL_DIR/train_dpn92.sh" --lr-step-epochs 6,10; }
model_M03() { run M03 dpn92 C NUM_EPOCHS=13 sh "$SHELL_DIR/train_dpn92.sh" --lr-step-epochs 6,10 --seed 1; }
model_M04() { run M04 densenet161 A sh "$SHELL_DIR/train_densenet161.sh"; }
model_M05() { run M05 dpn98 A sh "$SHELL_DIR/train_dpn98.sh"; }
model_M06() { run M06 dpn92 A sh "$SHELL_DIR/train_dpn92.sh"; }
model_M07() { run M07 resnext101_64x4d A sh "$SHELL_DIR/train_resnext101_64x4d.sh"; }
model_M08() { run M08 dpn131 A NUM_EPOCHS=18 sh "$SHELL_DIR/train_dpn131.sh" --optimizer nag --lr 0.005 --lr-step-epochs 10,13,16; }
model_M09() { run M09 resnext101_64x4d B sh "$SHELL_DIR/train_resnext101_64x4d.sh"; }
model_M10() { run M10 resnext101_32x4d A sh "$SHELL_DIR/train_resnext101_32x4d.sh"; }
model_M11() { run M11 se_resnext101_64x4d A RECIPE=M11 PARENT="$RUNS_DIR/M07_resnext101_64x4d" sh "$SHELL_DIR/train_se_resnext101_64x4d.sh"; }
model_M12() { run M12 dpn131 B sh "$SHELL_DIR/train_dpn131.sh"; }
model_M13() { run M13 se_resnext101_64x4d B PARENT="$RUNS_DIR/M09_resnext101_64x4d" sh "$SHELL_DIR/train_se_resnext101_64x4d.sh"; }
model_M14() { run M14 dpn107 A sh "$SHELL_DIR/train_dpn107.sh"; }

MODELS=${*:-M01 M02 M03 M04 M05 M06 M07 M08 M09 M10 M11 M12 M13 M14}
for model in $MODELS; do
    case "$model" in
        M0[1-9]|M1[0-4]) "model_$model" ;;
        *) echo "train_all: unknown model $model (M01 ... M14)" >&2; exit 1 ;;
    esac
done
