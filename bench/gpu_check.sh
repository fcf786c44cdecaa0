#!/bin/sh
# Every GPU figure of issues 13, 14 and 20 in one run of a few minutes, on a machine with a CUDA
# GPU and PyTorch, torchvision, timm, OpenCV and numpy but neither MXNet nor this project's other
# packages, and the project not installed (an H200 box, Python 3.12):
#
#   here:   sh bench/gpu_check.sh --wheels work/wheels-py312      # the packages it lacks, as wheels
#   there:  sh bench/gpu_check.sh OUT [WHEELS]                    # WHEELS: [work/wheels-py312]
#
# There it installs the wheels into a virtual environment over the system's packages (VENV: an
# existing one is used as it is), then measures, each with the command it logs, from the
# checkout (the benchmarks put it on sys.path themselves):
#   1. training DPN-92 from a synthetic 180x180 .rec in bf16 (bench/bench_train.py --backend torch):
#      the bare cv2.imdecode loop, the input pipeline alone (decoded by OpenCV in worker processes,
#      and in batches by nvJPEG on the GPU), the model alone and end to end, eager;
#   2. the same end to end with torch.compile (skipped, saying why, without a C compiler);
#   3. prediction of DPN-92 with 2 views through the whole ZeroMQ pipeline against the model
#      alone (bench/bench_predict.py --backend torch), decoded by the decoders and on the device.
# Issue 20's targets: training >= 2,300 img/s end to end (bf16, one H200), the input alone >= 3x
# that; prediction >= 6,000 img/s with 2 views, decoding included.
# Everything it writes is under OUT: the reports OUT/*.md (and .json), OUT/log.txt, the
# synthetic data OUT/work. It exits with the number of steps that failed (0: all ran).
# Settings from the environment: NETWORK [dpn92], DEVICE [gpu:0], DTYPE [bfloat16], TRAIN_BATCH
# [256], PREDICT_BATCH [512], WORKERS [14], PRODUCTS [6000], MIN_SECONDS [15] (per training
# measurement), COMPILE [1], VENV [/tmp/gpu_check_venv].
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PACKAGES="pymongo==4.10.1 pyzmq==27.1.0 tqdm==4.67.1 psutil==7.0.0 safetensors==0.8.0 matplotlib==3.10.3"

if [ "${1:-}" = "--wheels" ]; then
    set -e
    DIR=${2:?usage: sh bench/gpu_check.sh --wheels DIR}
    "${PYTHON:-$ROOT/.venv/bin/python}" -m pip download -q --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$DIR" $PACKAGES
    rm -f "$DIR"/numpy-*.whl "$DIR"/pillow-*.whl     # the machine's own (numpy 2; torchvision's Pillow)
    du -sh "$DIR"
    exit 0
fi

OUT=$(mkdir -p "${1:?usage: sh bench/gpu_check.sh OUT [WHEELS]}" && cd "$1" && pwd) || exit 1
WHEELS=${2:-$ROOT/work/wheels-py312}
NETWORK=${NETWORK:-dpn92}
DEVICE=${DEVICE:-gpu:0}
DTYPE=${DTYPE:-bfloat16}
WORKERS=${WORKERS:-14}
PRODUCTS=${PRODUCTS:-6000}
MIN_SECONDS=${MIN_SECONDS:-15}
VENV=${VENV:-/tmp/gpu_check_venv}
VENV=$(mkdir -p "$(dirname "$VENV")" && cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")
WORK=$OUT/work
LOG=$OUT/log.txt
: >"$LOG"

say() { echo "gpu_check: $*" | tee -a "$LOG"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV over the system's packages, with the wheels of $WHEELS"
    if ! { python3 -m venv --system-site-packages "$VENV" &&
           "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" $PACKAGES; } >>"$LOG" 2>&1; then
        say "error: the virtual environment $VENV could not be made (log: $LOG)"
        exit 1
    fi
fi
PY=$VENV/bin/python
FAILED=0
run() {
    echo "+ $*" | tee -a "$LOG"
    status=0
    "$@" >>"$LOG" 2>&1 || status=$?
    echo "exit status $status" | tee -a "$LOG"
    [ "$status" -eq 0 ] || FAILED=$((FAILED + 1))
    return "$status"
}

{ if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader; else echo "no nvidia-smi"; fi
  "$PY" -c "import torch, torchvision, timm, numpy; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'timm', timm.__version__, 'numpy', numpy.__version__)"; nproc; } 2>&1 | tee -a "$LOG"

run "$PY" "$ROOT/bench/bench_train.py" --backend torch --devices "$DEVICE" --dtype "$DTYPE" --networks "$NETWORK" \
    --batch-size "${TRAIN_BATCH:-256}" --workers "$WORKERS" --decode-on workers device --products "$PRODUCTS" \
    --input-batches 40 --min-seconds "$MIN_SECONDS" --work "$WORK" --out "$OUT/train_torch.md"
if [ "${COMPILE:-1}" = 1 ]; then
    problem=$(cd "$ROOT" && "$PY" -c "from models.backends import compiler_problem; print(compiler_problem() or '')")
    if [ -n "$problem" ]; then
        say "compiled training skipped: $problem"
    else
        run "$PY" "$ROOT/bench/bench_train.py" --backend torch --devices "$DEVICE" --dtype "$DTYPE" \
            --networks "$NETWORK" --batch-size "${TRAIN_BATCH:-256}" --workers "$WORKERS" --decode-on workers \
            --products "$PRODUCTS" --input-batches 10 --min-seconds "$MIN_SECONDS" --warmup 5 --compile \
            --work "$WORK" --out "$OUT/train_torch_compiled.md"
    fi
fi
for place in decoders device; do
    run "$PY" "$ROOT/bench/bench_predict.py" --backend torch --models "$NETWORK" --devices "$DEVICE" \
        --batch-size "${PREDICT_BATCH:-512}" --decoders "$WORKERS" --tta flip --decode-on "$place" \
        --products "$PRODUCTS" --work "$WORK" --out "$OUT/predict_torch_$place.md"
done
if [ "$FAILED" -eq 0 ]; then
    say "every step ran; results in $OUT"
else
    say "$FAILED step(s) failed (their output: $LOG); results of the others in $OUT"
fi
exit "$FAILED"
