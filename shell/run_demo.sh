#!/bin/sh
# The whole pipeline end to end on built-in synthetic data (what `make demo` runs):
#   synthetic train.bson/test.bson/category_names.csv -> offset indexes -> datasets A/B/C as
#   RecordIO (shell/bson2rec_trainval.sh) -> two tiny networks trained with train/train.py ->
#   predictions on A's validation side -> accuracy table beside the reference's ->
#   predictions on test.bson -> ensemble -> submission.csv.gz -> its score against the
#   synthetic test_solution.csv as Kaggle scored Cdiscount, beside the validation accuracy
#
# Settings from the environment: WORK [work], TRAIN_PRODUCTS [3000], TEST_PRODUCTS [500],
# CATEGORIES_N [20], EPOCHS [5], BATCH_SIZE [64], NETWORKS ["dpn_tiny resnext_tiny"],
# DECODERS [2], DEVICES [cpu; e.g. gpu:0,gpu:1: training's and the predictor's devices],
# BACKEND [mxnet; torch: every network trained and predicted with PyTorch; both: the first
# network trained with MXNet, the others with PyTorch, all predicted with PyTorch (Gluon runs
# converted on load), so that the ensemble mixes the two frameworks],
# TIMM_NETWORK [timm/resnet10t: with BACKEND=torch, one network of timm trained beside NETWORKS
# and ensembled with them, from random weights; empty: none], TIMM_IMAGE_SHAPE [3,64,64: its
# input, small enough for a CPU], PYTHON [.venv/bin/python, else python3].
# Re-running reuses every output that is already built and valid.
set -eu

WORK=${WORK:-work}
TRAIN_PRODUCTS=${TRAIN_PRODUCTS:-3000}
TEST_PRODUCTS=${TEST_PRODUCTS:-500}
CATEGORIES_N=${CATEGORIES_N:-20}
EPOCHS=${EPOCHS:-5}
BATCH_SIZE=${BATCH_SIZE:-64}
NETWORKS=${NETWORKS:-dpn_tiny resnext_tiny}
DECODERS=${DECODERS:-2}
DEVICES=${DEVICES:-cpu}
BACKEND=${BACKEND:-mxnet}
TIMM_NETWORK=${TIMM_NETWORK-timm/resnet10t}
TIMM_IMAGE_SHAPE=${TIMM_IMAGE_SHAPE:-3,64,64}
case "$BACKEND" in
    mxnet) PREDICT_BACKEND="" ;;
    torch) PREDICT_BACKEND="--backend torch"; NETWORKS="$NETWORKS $TIMM_NETWORK" ;;
    both) PREDICT_BACKEND="--backend torch" ;;
    *) echo "run_demo: error: BACKEND must be mxnet, torch or both, not '$BACKEND'" >&2; exit 2 ;;
esac
if [ -z "${PYTHON:-}" ]; then
    if [ -x "${VENV:-.venv}/bin/python" ]; then PYTHON=${VENV:-.venv}/bin/python; else PYTHON=python3; fi
fi
export PYTHON
SYNTH=$WORK/synth
REC=$WORK/rec
RUNS=$WORK/runs
PREDS=$WORK/preds
REPORT=$WORK/report
CSV=$SYNTH/category_names.csv
START=$(date +%s)

step() { echo "$(date '+%H:%M:%S') run_demo: == $* ==" >&2; }
run() { echo "$(date '+%H:%M:%S') run_demo: $*" >&2; "$@"; }

step "1/8 synthetic Kaggle data in $SYNTH"
if [ -f "$SYNTH/synth_meta.json" ] && [ -f "$SYNTH/train.bson" ] && [ -f "$SYNTH/test.bson" ] && [ -f "$CSV" ]; then
    echo "reusing $SYNTH (delete it to regenerate)" >&2
else
    run "$PYTHON" -m data.synth --out "$SYNTH" --train-products "$TRAIN_PRODUCTS" \
        --test-products "$TEST_PRODUCTS" --categories "$CATEGORIES_N" --seed 0
fi

step "2/8 BSON offset indexes"
run "$PYTHON" -m data.bson_index "$SYNTH/train.bson" "$SYNTH/test.bson"

step "3/8 datasets A, B, C and test as RecordIO in $REC"
DATA_DIR=$SYNTH REC_DIR=$REC run sh shell/bson2rec_trainval.sh

step "4/8 training: $NETWORKS on dataset A"
RUN_DIRS=""
for network in $NETWORKS; do
    case "$BACKEND" in
        both) if [ -z "$RUN_DIRS" ]; then backend=mxnet; else backend=torch; fi ;;
        *) backend=$BACKEND ;;
    esac
    case "$network" in
        timm/*) input="--image-shape $TIMM_IMAGE_SHAPE" ;;    # timm's networks take any input size
        *) input="" ;;
    esac
    run_dir=$RUNS/$(echo "$network" | tr / _)_A
    # shellcheck disable=SC2086
    run "$PYTHON" train/train.py --backend "$backend" --network "$network" $input \
        --data-train "$REC/A_train.rec" --data-val "$REC/A_val.rec" --num-classes "$CATEGORIES_N" \
        --batch-size "$BATCH_SIZE" --num-epochs "$EPOCHS" --optimizer nadam --lr 2e-3 \
        --lr-step-epochs "$((EPOCHS - 2)),$((EPOCHS - 1))" --lr-factor 0.2 --label-smoothing 0.1 \
        --wd 4e-5 --data-nthreads 2 --disp-batches 20 --model-dir "$run_dir" --resume \
        --devices "$DEVICES"
    RUN_DIRS="$RUN_DIRS $run_dir"
done

# predict INPUT OUT_DIR MD5_DICT: one prediction folder per run, skipped when newer than the run.
predict() {
    stale=""
    for run_dir in $RUN_DIRS; do
        manifest=$2/$(basename "$run_dir")/manifest.json
        if [ ! -f "$manifest" ] || [ "$run_dir/metrics.jsonl" -nt "$manifest" ]; then stale=1; fi
    done
    if [ -z "$stale" ]; then echo "reusing predictions in $2" >&2; return; fi
    # shellcheck disable=SC2086
    run "$PYTHON" predict/predict.py --input "$1" --models $RUN_DIRS $PREDICT_BACKEND --categories "$CSV" --out "$2" \
        --decoders "$DECODERS" --devices "$DEVICES" --batch-size 64 --tta flip --md5-dict "$3" --md5-mode none,unique \
        --combiners all --no-progress
}

step "5/8 predictions on A's validation side (MD5 dictionary from A's training side only)"
predict "$REC/A_val.rec" "$PREDS/A_val" "$REC/A_train.md5.npz"

step "6/8 validation-accuracy table beside the reference's"
# shellcheck disable=SC2046
run "$PYTHON" predict/ensemble.py --preds $(ls -d "$PREDS"/A_val/*/) --categories "$CSV" \
    --product-hash-dict "$REC/A_train.md5.npz" --table-out "$REPORT/accuracy" --no-progress

step "7/8 predictions on test.bson and the submission"
predict "$SYNTH/test.bson" "$PREDS/test" "$REC/train.md5.npz"
# shellcheck disable=SC2046
run "$PYTHON" predict/ensemble.py --preds $(ls -d "$PREDS"/test/*/) --categories "$CSV" \
    --md5-mode unique --product-hash-dict "$REC/train.md5.npz" --submission "$WORK/submission.csv.gz" \
    --no-progress

step "8/8 the submission scored against test_solution.csv as Kaggle scored Cdiscount (accuracy over products)"
# shellcheck disable=SC2046
SCORE=$(run "$PYTHON" predict/score.py --submission "$WORK/submission.csv.gz" --solution "$SYNTH/test_solution.csv" \
    --val-preds $(ls -d "$PREDS"/A_val/*/) --categories "$CSV" --md5-mode unique \
    --product-hash-dict "$REC/A_train.md5.npz")

ROWS=$(gzip -dc "$WORK/submission.csv.gz" | tail -n +2 | wc -l)
cat <<EOF

Demo finished in $(( $(date +%s) - START )) s. Outputs:
  synthetic Kaggle data   $SYNTH/{train.bson,test.bson,category_names.csv} (+ .index.npz offset indexes)
  datasets (RecordIO)     $REC/{A,B,C}_{train,val}.rec, test.rec (+ .idx, .report.json), *.split.npz, *.md5.npz
  training runs           $(echo $RUN_DIRS) (checkpoints, train.log, metrics.jsonl, curves.png)
  predictions             $PREDS/A_val/<run>/, $PREDS/test/<run>/
  accuracy table          $REPORT/accuracy.md, $REPORT/accuracy.png
  submission              $WORK/submission.csv.gz ($ROWS test products)

$SCORE
EOF
