"""A PyTorch training under faults, through real processes (issue 21): SIGKILL of the
training, of the process that started torchrun or of torchrun's agent leaves no process of
the job alive (torchrun, its workers, their DataLoader workers); Ctrl-C (SIGINT to the
process group, as a terminal sends it) ends a training within 2 s; a run trained on a
relative ``--data-train`` finds its class prior when the predictor runs from another folder.

The relaunch itself (``train.py --devices gpu:0,gpu:1`` starts torchrun) needs the GPUs:
here the process that starts torchrun runs ``train.train.run_phase``, what train.py runs
after its relaunch line, with torchrun's command for 2 CPU processes."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from helpers import still_running, write_report
from models import runs
from torch_recs import write_dataset

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TRAIN = os.path.join(REPO, "train", "train.py")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("faults_data")))


def training(dataset, run_dir, *extra):
    """The options of a long PyTorch training on the CPU, with 2 DataLoader workers."""
    train, val = dataset
    return ["--backend", "torch", "--devices", "cpu", "--data-train", train, "--data-val", val, "--num-classes", "4",
            "--image-shape", "3,32,32", "--network", "dpn_tiny", "--batch-size", "8", "--num-epochs", "100",
            "--data-nthreads", "2", "--model-dir", str(run_dir), "--no-progress", *extra]


def start(command, **kwargs):
    return subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, start_new_session=True, **kwargs)


def when_training(process, run_dir, processes, timeout=120):
    """The descendants of `process` once the run writes its first epoch's log lines and at
    least `processes` of them exist (its input workers started)."""
    log, deadline = run_dir / "train.log", time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        descendants = psutil.Process(process.pid).children(recursive=True)
        if log.exists() and "Epoch[0]" in log.read_text() and len(descendants) >= processes:
            return descendants
        time.sleep(0.1)
    pytest.fail("the training did not start its processes")


def torchrun(dataset, run_dir):
    """What ``train.py --devices gpu:0,gpu:1`` runs after printing its relaunch line, for 2 CPU processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", TRAIN,
               *training(dataset, run_dir)]
    return [sys.executable, "-c", "import sys; from train.train import run_phase; sys.exit(run_phase(sys.argv[1:]))",
            *command]


def agent_of(descendants):
    return [p for p in descendants if "torch.distributed.run" in " ".join(p.cmdline())]


# (what is started, how many processes of the job to wait for, which one is killed)
KILLS = {
    "train.py": (lambda dataset, run_dir: [sys.executable, TRAIN, *training(dataset, run_dir)], 2, "itself"),
    "the process that started torchrun": (torchrun, 5, "itself"),
    "torchrun's agent": (torchrun, 5, "agent"),
}


@pytest.mark.parametrize("case", list(KILLS))
def test_sigkill_leaves_no_process_of_the_job_alive(dataset, tmp_path, case):
    """torchrun's agent, re-parented to PID 1, used to start its workers and train on, holding
    the run folder; DataLoader workers looked at their parent every 5 s."""
    command, processes, victim = KILLS[case]
    process = start(command(dataset, tmp_path / "run"), stderr=subprocess.DEVNULL)
    descendants = when_training(process, tmp_path / "run", processes)
    try:
        killed = agent_of(descendants)[0] if victim == "agent" else psutil.Process(process.pid)
        killed.kill()
        alive = still_running([p for p in descendants if p != killed], timeout=3)
        assert not alive, f"alive 3 s after the SIGKILL of {case}: {alive}"
    finally:
        for p in [psutil.Process(process.pid), *descendants]:
            if p.is_running():
                p.kill()
        process.wait()


def test_ctrl_c_ends_a_training_within_2_s(dataset, tmp_path):
    """Ctrl-C at a few moments of a PyTorch training (its epochs start DataLoader workers
    over and over): ``train: interrupted``, exit 130 within 2 s of the signal (interpreter's
    shutdown took 1.6-4.6 s more), no process of the group left."""
    for attempt, delay in enumerate((0.0, 0.45, 1.3)):
        run_dir = tmp_path / f"run{attempt}"
        process = start([sys.executable, TRAIN, *training(dataset, run_dir)], stderr=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        when_training(process, run_dir, 2)
        time.sleep(delay)
        sent = time.time()
        os.killpg(process.pid, signal.SIGINT)
        try:
            status = process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"attempt {attempt}: still running 2 s after Ctrl-C")
        assert time.time() - sent < 2
        reader.join(5)
        assert status == 130 and lines[-1] == "train: interrupted\n", "".join(lines[-20:])
        assert "Traceback" not in "".join(lines)
        deadline = time.time() + 1            # the input workers die with the training (PR_SET_PDEATHSIG)
        while processes_of_group(process.pid) and time.time() < deadline:
            time.sleep(0.02)
        assert not processes_of_group(process.pid), f"attempt {attempt} left processes behind"


def processes_of_group(pgid):
    left = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except (ProcessLookupError, psutil.Error):
            pass
    return left


def test_a_run_trained_on_a_relative_data_train_finds_its_class_prior_from_another_folder(dataset, tmp_path):
    """The epoch's JSON records the training report's absolute path: the predictor's fallback
    prior, run from another folder, is that report's class histogram (it used to fall back to
    the uniform vector, the relative ``--data-train`` leading nowhere from there)."""
    data = tmp_path / "data"
    data.mkdir()
    for path in (dataset[0], dataset[0][:-4] + ".idx"):
        shutil.copy(path, data)
    report = write_report(str(data / "A_train.rec"), 4)
    options = [option if option != dataset[0] else "A_train.rec" for option in training(dataset, tmp_path / "run")]
    options[options.index("--num-epochs") + 1] = "1"
    done = subprocess.run([sys.executable, TRAIN, *options, "--data-nthreads", "1"], cwd=data, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr[-3000:]
    meta = runs.read_meta(str(tmp_path / "run"))
    assert meta["args"]["data_train"] == "A_train.rec" and meta["training_report"] == report
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "predict.predict", "--input", dataset[1], "--models",
                           str(tmp_path / "run"), "--out", str(tmp_path / "preds"), "--decoders", "0", "--backend",
                           "torch", "--no-progress"], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "preds" / "run" / "manifest.json", encoding="utf-8") as f:
        assert json.load(f)["fallback"]["class_prior"] == report
