#!/bin/sh
# Every GPU figure of issues 13 and 14 in one run of a few minutes, on a machine with a CUDA GPU
# and PyTorch, torchvision, timm, OpenCV and numpy but neither MXNet nor this project's other
# packages (an H200 box, Python 3.12):
#
#   here:   sh bench/gpu_check.sh --wheels work/wheels-py312      # the packages it lacks, as wheels
#   there:  sh bench/gpu_check.sh OUT [WHEELS]                    # WHEELS: [work/wheels-py312]
#
# There it installs the wheels into a virtual environment over the system's packages, then
# measures, each with the command it prints:
#   1. training DPN-92 from a synthetic 180x180 .rec in bf16 (bench/bench_train.py --backend torch):
#      the input pipeline alone (decoded by OpenCV in worker processes, and in batches by nvJPEG
#      on the GPU), the model alone and end to end, eager;
#   2. the same end to end with torch.compile;
#   3. prediction of DPN-92 with 2 views through the whole ZeroMQ pipeline against the model
#      alone (bench/bench_predict.py --backend torch), decoded by the decoders and on the device.
# Results: OUT/*.md, OUT/log.txt. Settings from the environment: NETWORK [dpn92], DEVICE
# [gpu:0], DTYPE [bfloat16], TRAIN_BATCH [256], PREDICT_BATCH [512], WORKERS [14], PRODUCTS
# [6000], MIN_SECONDS [15] (per training measurement), COMPILE [1].
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PACKAGES="pymongo==4.10.1 pyzmq==27.1.0 tqdm==4.67.1 psutil==7.0.0 safetensors==0.8.0 matplotlib==3.10.3"

if [ "${1:-}" = "--wheels" ]; then
    DIR=${2:?usage: sh bench/gpu_check.sh --wheels DIR}
    "${PYTHON:-$ROOT/.venv/bin/python}" -m pip download -q --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$DIR" $PACKAGES
    rm -f "$DIR"/numpy-*.whl "$DIR"/pillow-*.whl     # the machine's own (numpy 2; torchvision's Pillow)
    du -sh "$DIR"
    exit 0
fi

OUT=$(mkdir -p "${1:?usage: sh bench/gpu_check.sh OUT [WHEELS]}" && cd "$1" && pwd)
WHEELS=${2:-$ROOT/work/wheels-py312}
NETWORK=${NETWORK:-dpn92}
DEVICE=${DEVICE:-gpu:0}
DTYPE=${DTYPE:-bfloat16}
WORKERS=${WORKERS:-14}
PRODUCTS=${PRODUCTS:-6000}
MIN_SECONDS=${MIN_SECONDS:-15}
VENV=$(cd "$(dirname "${VENV:-/tmp/gpu_check_venv}")" && pwd)/$(basename "${VENV:-/tmp/gpu_check_venv}")
LOG=$OUT/log.txt

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV"
    "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" $PACKAGES
fi
PY=$VENV/bin/python
run() {
    echo "+ $*" | tee -a "$LOG"
    status=0
    "$@" >>"$LOG" 2>&1 || status=$?
    echo "exit status $status" | tee -a "$LOG"
    return $status
}
cd "$ROOT/bench"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PY" -c "import torch, torchvision, timm, numpy; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'timm', timm.__version__, 'numpy', numpy.__version__)"; nproc; } 2>&1 | tee "$LOG"

run "$PY" bench_train.py --backend torch --devices "$DEVICE" --dtype "$DTYPE" --networks "$NETWORK" \
    --batch-size "${TRAIN_BATCH:-256}" --workers "$WORKERS" --decode-on workers device --products "$PRODUCTS" \
    --input-batches 40 --min-seconds "$MIN_SECONDS" --out "$OUT/train_torch.md" || true
if [ "${COMPILE:-1}" = 1 ]; then
    run "$PY" bench_train.py --backend torch --devices "$DEVICE" --dtype "$DTYPE" --networks "$NETWORK" \
        --batch-size "${TRAIN_BATCH:-256}" --workers "$WORKERS" --decode-on workers --products "$PRODUCTS" \
        --input-batches 10 --min-seconds "$MIN_SECONDS" --warmup 5 --compile --out "$OUT/train_torch_compiled.md" || true
fi
for place in decoders device; do
    results=results/predict_torch.md
    [ "$place" = decoders ] || results=results/predict_torch.decode-on-device.md
    if run "$PY" bench_predict.py --backend torch --models "$NETWORK" --devices "$DEVICE" \
        --batch-size "${PREDICT_BATCH:-512}" --decoders "$WORKERS" --tta flip --decode-on "$place" \
        --products "$PRODUCTS"; then
        cp "$results" "$OUT/predict_torch_$place.md"
    fi
done
echo "results in $OUT" | tee -a "$LOG"
