# Sourced by shell/train_<network>.sh: the settings every recipe shares, from the environment.
#
#   REC_DIR      folder of the RecordIO datasets from shell/bson2rec_trainval.sh [work/rec]
#   DATASET      A, B or C: trains on $REC_DIR/${DATASET}_train.rec, validates on ${DATASET}_val.rec
#                [the recipe's]
#   GPUS         e.g. 0,1,2,3 [every GPU MXNet sees; none: CPU]
#   BATCH_SIZE   images per batch over all GPUs [the recipe's: 512, 384 for DPN-107/131]
#   GRAD_ACCUM   batches per optimizer step, for the recipe's batch on fewer GPUs, e.g.
#                BATCH_SIZE=64 GRAD_ACCUM=8 on one GPU [1]
#   NUM_EPOCHS   [the recipe's]
#   DTYPE        float32 (the reference) or float16 (GPU) [float32]
#   KV_STORE     device, local, nccl [device]
#   RUNS_DIR     [work/runs];  MODEL_DIR  run folder [$RUNS_DIR/<network>_$DATASET]
#   PRETRAINED_DIR  folder of the ImageNet weights [work/pretrained];
#   PRETRAINED   their file [$PRETRAINED_DIR/<the recipe's file name>]; empty: random initialisation
#   NUM_CLASSES  [5270]
#   REFERENCE_WD 1: as the reference, --wd reaches SGD/NAG only, Adam/NAdam run without weight
#                decay; 0: weight decay for every optimizer [1]
#   RESUME       1: continue from the run folder's last checkpoint when there is one [1]
#   PYTHON       [$VENV/bin/python with VENV=.venv, else python3]
# Arguments given to the recipe script are passed on to train/train.py after the recipe's own
# and win over them (e.g. `sh shell/train_dpn92.sh --lr 5e-5`).

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "${VENV:-.venv}/bin/python" ]; then PYTHON=${VENV:-.venv}/bin/python; else PYTHON=python3; fi
fi
if [ -z "${GPUS+set}" ]; then
    GPUS=$("$PYTHON" -c 'import mxnet; print(",".join(map(str, range(mxnet.context.num_gpus()))))' 2>/dev/null)
fi
REC_DIR=${REC_DIR:-work/rec}
RUNS_DIR=${RUNS_DIR:-work/runs}
MODEL_DIR=${MODEL_DIR:-$RUNS_DIR/${NETWORK}_$DATASET}
PRETRAINED_DIR=${PRETRAINED_DIR:-work/pretrained}
PRETRAINED=${PRETRAINED-$PRETRAINED_DIR/$PRETRAINED_FILE}
GRAD_ACCUM=${GRAD_ACCUM:-1}
DTYPE=${DTYPE:-float32}
KV_STORE=${KV_STORE:-device}
NUM_CLASSES=${NUM_CLASSES:-5270}
REFERENCE_WD=${REFERENCE_WD:-1}
RESUME=${RESUME:-1}

# train RECIPE_ARGUMENTS... : run train/train.py with the shared settings, then the arguments.
train() {
    [ -n "$PRETRAINED" ] && set -- --pretrained "$PRETRAINED" "$@"
    [ "$REFERENCE_WD" = 1 ] && set -- --wd-sgd-only "$@"
    [ "$RESUME" = 1 ] && set -- --resume "$@"
    [ -z "$GPUS" ] && echo "train_$NETWORK: no GPU found, training on the CPU (set GPUS=0,1,... to choose)" >&2
    "$PYTHON" "$ROOT/train/train.py" --network "$NETWORK" \
        --data-train "$REC_DIR/${DATASET}_train.rec" --data-val "$REC_DIR/${DATASET}_val.rec" \
        --num-classes "$NUM_CLASSES" --gpus "$GPUS" --kv-store "$KV_STORE" --dtype "$DTYPE" \
        --batch-size "$BATCH_SIZE" --grad-accum "$GRAD_ACCUM" --num-epochs "$NUM_EPOCHS" \
        --model-dir "$MODEL_DIR" "$@"
}
