# Sourced by shell/train_<network>.sh and shell/train_all.sh: the settings every recipe shares, from
# the environment, passed to `train/train.py --recipe` as its options. The recipes themselves
# (networks, datasets, parents, phases and their hyper-parameters) are train/recipes.py's; see them
# with `python train/train.py --recipe all --help`, and a recipe's command lines with --dry-run.
#
#   REC_DIR      folder of the RecordIO datasets from shell/bson2rec_trainval.sh [work/rec]
#   DATASET      A, B or C: trains on $REC_DIR/${DATASET}_train.rec, validates on ${DATASET}_val.rec
#                [the recipe's]
#   DEVICES      cpu, or gpu:0,gpu:1,... as every tool spells them [every GPU MXNet sees]
#   GPUS         the same as GPU numbers: 0,1,2,3 means gpu:0,gpu:1,gpu:2,gpu:3, empty the CPU
#                (DEVICES wins when both are set)
#   BATCH_SIZE   images per batch over all GPUs [the recipe's: 512, 384 for DPN-107/131]
#   GRAD_ACCUM   batches per optimizer step, for the recipe's batch on fewer GPUs, e.g.
#                BATCH_SIZE=64 GRAD_ACCUM=8 on one GPU [1]
#   NUM_EPOCHS   the epoch training ends at: the phase it falls in ends there, later phases are
#                left out [the recipe's]
#   BACKEND      mxnet (Gluon) or torch (PyTorch: Hopper and newer GPUs; on several GPUs each phase
#                runs under torchrun, one process per GPU, sharing BATCH_SIZE) [mxnet]
#   DTYPE        float32 (the reference) or float16 (GPU); with BACKEND=torch also bfloat16 [float32]
#   KV_STORE     device, local, nccl [device]
#   RUNS_DIR     [work/runs]
#   MODEL_DIR    run folder [$RUNS_DIR/<network>_$DATASET; shell/train_all.sh: $RUNS_DIR/Mxx_<network>]
#   PARENT       run folder a recipe with a parent starts from [its parent's run folder]
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

# run_recipes ARGUMENTS...: train/train.py with the settings above as options, then ARGUMENTS (the
# recipe's name and the script's arguments, which win). An empty GPUS or PRETRAINED means something
# (the CPU, no weights); any other empty setting is left to the recipe.
# devices_of_gpus NUMBERS: GPUS as --devices spells it (0,1 -> gpu:0,gpu:1; empty -> cpu).
devices_of_gpus() {
    if [ -z "$1" ]; then echo cpu; else echo "gpu:$1" | sed 's/,/,gpu:/g'; fi
}

run_recipes() {
    [ "${RESUME:-1}" = 1 ] || set -- --no-resume "$@"
    [ "${REFERENCE_WD:-1}" = 1 ] || set -- --no-wd-sgd-only "$@"
    exec "$PYTHON" "$ROOT/train/train.py" \
        ${REC_DIR:+--rec-dir "$REC_DIR"} ${DATASET:+--dataset "$DATASET"} ${GPUS+--devices "$(devices_of_gpus "$GPUS")"} \
        ${DEVICES:+--devices "$DEVICES"} \
        ${BATCH_SIZE:+--batch-size "$BATCH_SIZE"} ${GRAD_ACCUM:+--grad-accum "$GRAD_ACCUM"} \
        ${NUM_EPOCHS:+--num-epochs "$NUM_EPOCHS"} ${DTYPE:+--dtype "$DTYPE"} ${KV_STORE:+--kv-store "$KV_STORE"} \
        ${BACKEND:+--backend "$BACKEND"} \
        ${RUNS_DIR:+--runs-dir "$RUNS_DIR"} ${MODEL_DIR:+--model-dir "$MODEL_DIR"} ${PARENT:+--parent "$PARENT"} \
        ${PRETRAINED_DIR:+--pretrained-dir "$PRETRAINED_DIR"} ${PRETRAINED+--pretrained "$PRETRAINED"} \
        ${NUM_CLASSES:+--num-classes "$NUM_CLASSES"} "$@"
}
