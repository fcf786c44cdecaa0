"""data.locks: one writer per output, across real processes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from data.locks import OutputLockedError, lock_path, output_lock

HOLD = """
import os, sys, time
from data.locks import output_lock
with output_lock(sys.argv[1]):
    if len(sys.argv) > 2:            # leave a forked child behind, then die without cleanup
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(ready_w, b"1")  # the at-fork hooks have run by now
            time.sleep(60)
            os._exit(0)
        os.read(ready_r, 1)
        print("child", child, flush=True)
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(output, *extra):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output), *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_fails_naming_pid_and_host(tmp_path):
    out = tmp_path / "A_train.rec"
    proc = _holder(out)
    try:
        with pytest.raises(OutputLockedError, match=rf"A_train.rec is being written by pid {proc.pid} \(host "):
            with output_lock(str(out)):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_process_is_taken_over_also_with_orphaned_children(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "fork"], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline().split()[1])
    assert proc.stdout.readline().strip() == "locked"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        with output_lock(str(out)):       # the orphaned child closed its inherited descriptor at fork
            assert open(lock_path(out)).read().split()[0] == str(os.getpid())
    finally:
        os.kill(child, signal.SIGKILL)
    assert not os.path.exists(lock_path(out))


def test_reentrant_and_folder_outputs(tmp_path):
    folder = str(tmp_path / "preds") + "/"
    with output_lock(folder):
        with output_lock(folder.rstrip("/")):
            assert os.path.exists(tmp_path / ".preds.lock")
    assert not os.path.exists(tmp_path / ".preds.lock")
