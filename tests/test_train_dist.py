"""MXNet's dist_sync kvstore: a scheduler, a server and two workers as real processes on loopback."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil

from helpers import still_running, write_synthetic_dataset
from models.training_log import read_training_log
from data import record_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 6


def listening_addresses(proc):
    """IP addresses the process tree of `proc` listens on (TCP)."""
    addresses = set()
    try:
        tree = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return addresses
    for p in tree:
        try:
            addresses.update(c.laddr.ip for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return addresses


def test_dist_sync_two_workers_train_and_converge(tmp_path):
    data = write_synthetic_dataset(str(tmp_path / "rec"), NUM_CLASSES, train_products=300, val_products=80, seed=31)
    run_dir = str(tmp_path / "run")
    command = [sys.executable, "-m", "train.mxnet_backend.launch", "-n", "2", "-s", "1", "--",
               sys.executable, os.path.join(ROOT, "train", "train.py"), "--kv-store", "dist_sync",
               "--network", "resnext_tiny", "--data-train", data["train"], "--data-val", data["val"],
               "--num-classes", str(NUM_CLASSES), "--image-shape", "3,32,32", "--batch-size", "16",
               "--num-epochs", "3", "--lr", "0.003", "--lr-step-epochs", "2", "--disp-batches", "4",
               "--model-dir", run_dir, "--no-progress"]
    log_path = tmp_path / "job.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        seen = set()
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            seen |= listening_addresses(proc)
            time.sleep(0.1)
        if proc.poll() is None:   # hung: stop the launcher and everything it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert seen and seen <= {"127.0.0.1"}, seen          # scheduler and servers bind loopback only

    # Two workers, each on its own half of the data.
    batches = record_file.open_record_file(data["train"]).num_records // 2 // 16
    assert "worker 0 of 2" in output and "worker 1 of 2" in output
    assert output.count("%d batches of 16 per epoch and worker, 2 worker(s)" % batches) == 2
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["val"]["accuracy"] > 0.6 > 1 / NUM_CLASSES
    assert records[-1]["train"]["cross-entropy"] < records[0]["train"]["cross-entropy"]
    # Worker 0 validates and writes the checkpoints and the run's log.
    log = read_training_log(os.path.join(run_dir, "train.log"))
    assert [epoch for epoch, _ in log.validation_accuracies()] == [0, 1, 2]
    with open(os.path.join(run_dir, "train.log")) as f:
        run_log = f.read()
    assert "worker 0 of 2" in run_log and "worker 1 of 2" not in run_log


def test_stopping_the_launcher_stops_the_job():
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    proc = subprocess.Popen([sys.executable, "-m", "train.mxnet_backend.launch", "-n", "2", "-s", "1", "--", *sleeper], cwd=ROOT,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while len(psutil.Process(proc.pid).children()) < 4 and time.time() < deadline:
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children()
        assert len(children) == 4                       # scheduler, server, two workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        alive = still_running(children, timeout=30)
        assert not alive
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
