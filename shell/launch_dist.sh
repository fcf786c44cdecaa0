#!/bin/sh
# Train on several processes or machines with MXNet's distributed kvstore: starts a scheduler,
# servers and workers with the DMLC_* variables they need (python -m train.mxnet_backend.launch).
#
#   sh shell/launch_dist.sh -n WORKERS [-s SERVERS] [--hostfile FILE] [--host-ip IP] -- COMMAND...
#
# On this machine (no --hostfile; everything bound to 127.0.0.1), e.g. to try it with two CPU
# workers (the GPUs of one machine train fastest in one process, KV_STORE=device):
#   sh shell/launch_dist.sh -n 2 -- env KV_STORE=dist_sync DEVICES=cpu sh shell/train_dpn92.sh --network dpn_tiny
# On several machines: FILE lists one host[:ssh_port] per line (dmlc_tracker's ssh format); the
# scheduler runs here (reachable at --host-ip), servers and workers are started over ssh,
# round-robin over the hosts, in this same directory, which must hold the same checkout,
# virtualenv and data paths on every host (a shared filesystem, so that worker 0's checkpoints
# are where --resume looks for them). Each worker trains on its own shard of the .rec:
#   sh shell/launch_dist.sh -n 4 -s 2 --hostfile hosts --host-ip 10.0.0.1 -- \
#       env KV_STORE=dist_device_sync DEVICES=gpu:0,gpu:1,gpu:2,gpu:3 BATCH_SIZE=256 sh shell/train_dpn92.sh
# The batch size is per worker; the learning rate applies to the effective batch of all workers.
# The Python interpreter is $PYTHON (default: $VENV/bin/python, VENV=.venv, else python3).
set -eu
if [ -z "${PYTHON:-}" ]; then
    if [ -x "${VENV:-.venv}/bin/python" ]; then PYTHON=${VENV:-.venv}/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m train.mxnet_backend.launch "$@"
