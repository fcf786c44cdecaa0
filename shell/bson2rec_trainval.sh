#!/bin/sh
# Build the reference's datasets as indexed MXNet RecordIO: splits A and B, MD5 dictionaries,
# A/B/C train and validation sides, and the test set.
#
#   sh shell/bson2rec_trainval.sh [options]
#
# Options (each also read from the environment variable in brackets; options win):
#   --data-dir DIR     folder of the Kaggle files [DATA_DIR, default work/synth]
#   --train-bson FILE  [TRAIN_BSON, default $DATA_DIR/train.bson]
#   --test-bson FILE   [TEST_BSON, default $DATA_DIR/test.bson]
#   --categories FILE  [CATEGORIES, default $DATA_DIR/category_names.csv]
#   --rec-dir DIR      output folder [REC_DIR, default work/rec]
#   --workers N        conversion processes [WORKERS, default: all cores]
#   --ratio R          validation share of the splits [RATIO, default 0.05]
#   --skip-bad         skip bad input and list it in the reports [SKIP_BAD=1]
#   --force            convert again even when an output is up to date [FORCE=1]
# The Python interpreter is $PYTHON (default: $VENV/bin/python, VENV=.venv, else python3).
#
# Writes to REC_DIR: A.split.npz, B.split.npz; A_train.md5.npz and B_train.md5.npz (training
# sides only, for validation) and train.md5.npz (all of train.bson, for the test submission);
# {A,B,C}_{train,val}.rec/.idx/.report.json, test.rec/.idx/.report.json, and the per-image
# MD5s of train.bson (train.bson.image_md5.npz). The BSON offset index is cached beside each BSON
# file. A finished dataset is not converted again, and an interrupted conversion resumes,
# so the script can simply be re-run. Every picture is checked (bson2rec's default): one that
# will not decode stops the run with an error naming the file, offset, product and image
# number, or with --skip-bad is left out and listed in the reports.
set -eu

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') bson2rec_trainval: $*" >&2; }
die() { log "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) DATA_DIR=$2; shift 2 ;;
        --train-bson) TRAIN_BSON=$2; shift 2 ;;
        --test-bson) TEST_BSON=$2; shift 2 ;;
        --categories) CATEGORIES=$2; shift 2 ;;
        --rec-dir) REC_DIR=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --ratio) RATIO=$2; shift 2 ;;
        --skip-bad) SKIP_BAD=1; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

DATA_DIR=${DATA_DIR:-work/synth}
TRAIN_BSON=${TRAIN_BSON:-$DATA_DIR/train.bson}
TEST_BSON=${TEST_BSON:-$DATA_DIR/test.bson}
CATEGORIES=${CATEGORIES:-$DATA_DIR/category_names.csv}
REC_DIR=${REC_DIR:-work/rec}
WORKERS=${WORKERS:-$(getconf _NPROCESSORS_ONLN)}
RATIO=${RATIO:-0.05}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "${VENV:-.venv}/bin/python" ]; then PYTHON=${VENV:-.venv}/bin/python; else PYTHON=python3; fi
fi
BAD_OPTION=""
[ "${SKIP_BAD:-0}" = 1 ] && BAD_OPTION="--skip-bad"
FORCE_OPTION=""
[ "${FORCE:-0}" = 1 ] && FORCE_OPTION="--force"

for input in "$TRAIN_BSON" "$TEST_BSON" "$CATEGORIES"; do
    [ -f "$input" ] || die "$input not found (synthetic data: $PYTHON -m data.synth --out $DATA_DIR)"
done
mkdir -p "$REC_DIR"
DIGESTS=$REC_DIR/$(basename "$TRAIN_BSON").image_md5.npz    # per-image MD5s of train.bson, computed once
log "train $TRAIN_BSON, test $TEST_BSON, categories $CATEGORIES -> $REC_DIR ($WORKERS workers, python $PYTHON)"

run() {
    log "$*"
    "$PYTHON" "$@" || die "step failed: $*"
}

# Splits: DATASET_A seed 12648430 (0xC0FFEE), DATASET_B seed 1; C reuses A's split.
run -m data.split_train_bson "$TRAIN_BSON" --seed 12648430 --ratio "$RATIO" --out "$REC_DIR/A.split.npz" $BAD_OPTION
run -m data.split_train_bson "$TRAIN_BSON" --seed 1 --ratio "$RATIO" --out "$REC_DIR/B.split.npz" $BAD_OPTION

# MD5 dictionaries: one pass computes every image's MD5 ($DIGESTS), the rest is counting.
for dataset in A B; do
    run -m data.md5_dict "$TRAIN_BSON" --split "$REC_DIR/$dataset.split.npz" --side train \
        --out "$REC_DIR/${dataset}_train.md5.npz" --digests "$DIGESTS" --workers "$WORKERS" $BAD_OPTION
done
run -m data.md5_dict "$TRAIN_BSON" --out "$REC_DIR/train.md5.npz" --digests "$DIGESTS" --workers "$WORKERS" $BAD_OPTION

# RecordIO: A and B as they are, C = A's split keeping the first occurrence of each image MD5.
convert_side() {   # DATASET SPLIT SIDE [more bson2rec options]
    dataset=$1 split=$2 side=$3
    shift 3
    run -m data.bson2rec "$TRAIN_BSON" --categories "$CATEGORIES" --split "$REC_DIR/$split.split.npz" \
        --side "$side" --out "$REC_DIR/${dataset}_$side.rec" --workers "$WORKERS" "$@" $BAD_OPTION $FORCE_OPTION
}
for side in train val; do convert_side A A "$side"; done
for side in train val; do convert_side B B "$side"; done
for side in train val; do convert_side C A "$side" --unique-md5 --digests "$DIGESTS"; done
run -m data.bson2rec "$TEST_BSON" --out "$REC_DIR/test.rec" --workers "$WORKERS" $BAD_OPTION $FORCE_OPTION

log "done: $(ls "$REC_DIR"/*.rec | wc -l) RecordIO files in $REC_DIR"
