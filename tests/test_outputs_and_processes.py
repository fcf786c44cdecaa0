"""Outputs of the data tools that look complete are complete, and their processes never
outlive them: one writer per output, the .rec/.idx/.report.json published and checked as
one unit, workers that die with their parent, Ctrl-C that returns at once and resumes, a
full disk that names the output and publishes nothing, temporary files cleaned up."""
import contextlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import bson
import mxnet as mx
import psutil
import pytest

from data.bson2rec import ConvertOptions, convert
from data.bson_index import BsonIndex, index_path_for
from data.locks import lock_path, output_lock
from data.recordio import record_paths
from helpers import file_bytes, make_products, still_running, write_bson, write_categories

PRODUCTS = 1500              # ~9 MB of BSON, 3,716 images: ~0.1-0.3 s of conversion here


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A train.bson (indexed) and its category_names.csv, shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("data")
    path = write_bson(str(folder / "train.bson"), make_products(PRODUCTS, seed=3))
    BsonIndex.load_or_build(path)
    return path, write_categories(folder / "category_names.csv")


def bson2rec(dataset, out, *extra):
    path, csv = dataset
    return [sys.executable, "-m", "data.bson2rec", path, "--categories", csv, "--out", str(out), "--workers", "2",
            "--part-mb", "0.2", "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The bytes of the default conversion of `dataset` (rec, idx, report)."""
    rec = tmp_path_factory.mktemp("reference") / "A_train.rec"
    subprocess.run(bson2rec(dataset, rec), check=True, capture_output=True)
    return file_bytes(*record_paths(str(rec)))


def read_through_idx(rec):
    """Every record of `rec`, read one by one by MXNet through its .idx: (header, image)."""
    reader = mx.recordio.MXIndexedRecordIO(record_paths(str(rec))[1], str(rec), "r")
    try:
        return [mx.recordio.unpack(reader.read_idx(key)) for key in reader.keys]
    finally:
        reader.close()


def wait_for(condition, timeout=20, step=0.002):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail("timed out")
        time.sleep(step)


def lock_holder(output):
    """The pid written in the lock file of `output`, or None."""
    try:
        text = open(lock_path(str(output))).read().split()
    except FileNotFoundError:
        return None
    return int(text[0]) if text else None


def processes_of_group(pgid):
    """Live processes of process group `pgid` (a tool started in a new session and its workers)."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                alive.append(proc)
    return alive


# ---- 1.1 one writer per output ----------------------------------------------------------------

def test_a_second_conversion_of_one_output_fails_at_once_and_the_first_publishes_a_whole_output(
        dataset, reference, tmp_path):
    """The issue's race: the same input with --seed 7 started 0.5 s after the default run.
    The first run is held (SIGSTOP) once it has the lock, so that the two surely overlap."""
    rec = tmp_path / "A_train.rec"
    first = subprocess.Popen(bson2rec(dataset, rec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: lock_holder(rec) == first.pid)
    first.send_signal(signal.SIGSTOP)
    time.sleep(0.5)
    try:
        started = time.time()
        second = subprocess.run(bson2rec(dataset, rec, "--seed", "7"), capture_output=True, text=True, timeout=30)
        elapsed = time.time() - started
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and elapsed < 5
    errors = [line for line in second.stderr.splitlines() if "error:" in line]
    assert errors == [f"bson2rec: error: {rec} is being written by pid {first.pid} "
                      f"(host {os.uname().nodename})"]
    assert "Traceback" not in second.stderr
    records = read_through_idx(rec)
    assert len(records) == 3716 and all(len(image) > 0 for _, image in records)
    assert file_bytes(*record_paths(str(rec))) == reference
    assert sorted(os.listdir(tmp_path)) == ["A_train.idx", "A_train.rec", "A_train.report.json"]


def test_a_conversion_waits_for_the_index_another_process_is_building(dataset, reference, tmp_path):
    """The index cache is locked only while it is built: a conversion that needs it meanwhile
    waits and then reads it, instead of failing or building it a second time."""
    path = shutil.copy(dataset[0], tmp_path / "train.bson")
    with output_lock(index_path_for(str(path))):
        proc = subprocess.Popen(bson2rec((str(path), dataset[1]), tmp_path / "A_train.rec"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None, proc.communicate()
        BsonIndex.load_or_build(str(path))          # what the holder of the lock was doing
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"is being written by pid {os.getpid()}" in err and "waiting for it" in err
    assert file_bytes(*record_paths(str(tmp_path / "A_train.rec")))[:2] == reference[:2]   # (the report names the copy)


def test_conversions_of_two_sides_of_one_fresh_file_run_together(dataset, tmp_path):
    path = shutil.copy(dataset[0], tmp_path / "train.bson")       # not indexed yet
    outputs = [tmp_path / "A_train.rec", tmp_path / "B_train.rec"]
    procs = [subprocess.Popen(bson2rec((str(path), dataset[1]), out, "--seed", str(seed)), stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True) for seed, out in enumerate(outputs)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    for out in outputs:
        assert len(read_through_idx(out)) == 3716


# ---- 1.2 .rec, .idx and report: one published unit -------------------------------------------

def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def garble(path, at=0.5):
    """Overwrite 64 bytes at `at` of the file's length (the size stays)."""
    data = bytearray(open(path, "rb").read())
    start = int((len(data) - 64) * at)
    data[start:start + 64] = b"7\t123\n" * 10 + b"\0" * 4
    open(path, "wb").write(bytes(data))


DAMAGES = {
    "truncated .idx": (1, truncate),
    "garbage in the .idx": (1, garble),
    "garbage at the end of the .rec": (0, lambda p: garble(p, at=1)),
    "truncated .rec": (0, truncate),
    "no report": (2, os.unlink),
    "garbage report": (2, lambda p: open(p, "w").write("{")),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_or_incomplete_output_is_converted_again_never_reused(damage, dataset, reference, tmp_path):
    rec = str(tmp_path / "A_train.rec")
    options = ConvertOptions(categories=dataset[1], workers=2, part_mb=0.2)
    convert(dataset[0], rec, options, progress=False)
    which, spoil = DAMAGES[damage]
    spoil(record_paths(rec)[which])
    stamp = os.stat(rec).st_mtime_ns
    convert(dataset[0], rec, options, progress=False)
    assert os.stat(rec).st_mtime_ns != stamp, "converted again"
    assert file_bytes(*record_paths(rec)) == reference


def test_a_run_killed_between_publishing_the_rec_and_the_report_is_converted_again(
        dataset, reference, tmp_path, monkeypatch):
    """The report is renamed into place last: a kill just before leaves a .rec and .idx without
    it (and the parts folder without merged.rec), which the next run converts from scratch."""
    rec = str(tmp_path / "A_train.rec")
    report_path = record_paths(rec)[2]
    replace = os.replace

    def killed_before_the_report(src, dst):
        if dst == report_path:
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_before_the_report)
    options = ConvertOptions(categories=dataset[1], workers=2, part_mb=0.2)
    with pytest.raises(KeyboardInterrupt):
        convert(dataset[0], rec, options, progress=False)
    monkeypatch.setattr(os, "replace", replace)
    assert os.path.exists(rec) and not os.path.exists(report_path)
    convert(dataset[0], rec, options, progress=False)
    assert file_bytes(*record_paths(rec)) == reference


# ---- 9 temporary names -------------------------------------------------------------------------

def test_temporary_files_of_a_killed_run_are_removed_by_the_next_writer_only(dataset, tmp_path):
    ours = [".A.rec.0badc0de.tmp", ".A.idx.12345678.tmp", ".A.report.json.abcdef01.tmp"]
    others = [".A2.rec.12345678.tmp", ".A.x.rec.12345678.tmp", "A.rec.12345678.tmp"]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"partial")
    convert(dataset[0], str(tmp_path / "A.rec"), ConvertOptions(categories=dataset[1], workers=1), progress=False)
    assert sorted(os.listdir(tmp_path)) == sorted(others + ["A.idx", "A.rec", "A.report.json"])


# ---- 3 workers die with their parent; Ctrl-C returns at once and resumes ---------------------

def md5_dict(dataset, out):
    return [sys.executable, "-m", "data.md5_dict", dataset[0], "--out", str(out), "--workers", "2",
            "--digests", str(out) + ".digests.npz", "--no-progress"]


@pytest.mark.parametrize("tool", [bson2rec, md5_dict], ids=["bson2rec", "md5_dict"])
def test_sigkill_of_the_parent_leaves_no_worker_alive(tool, dataset, tmp_path):
    """What the out-of-memory killer does to a conversion: its workers must not live on."""
    for attempt in range(20):      # until the parent is caught while its workers exist
        proc = subprocess.Popen(tool(dataset, tmp_path / f"out{attempt}.rec"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        parent = psutil.Process(proc.pid)
        workers = []
        with contextlib.suppress(psutil.NoSuchProcess):
            while proc.poll() is None and len(workers) < 2:
                workers = parent.children()
        proc.kill()
        proc.wait()
        if len(workers) == 2:
            break
    else:
        pytest.fail("never saw the workers")
    alive = still_running(workers, timeout=5)
    assert not alive, f"orphaned workers: {alive}"


@pytest.mark.slow
def test_ctrl_c_at_random_moments_returns_within_2_s_and_the_run_resumes(dataset, reference, tmp_path):
    """50 Ctrl-C (SIGINT to the process group, as a terminal sends it) at random moments of a
    conversion: each run ends within 2 s leaving no process behind, and the interrupted runs
    resume each other to the reference output."""
    rec = tmp_path / "A_train.rec"
    rng = random.Random(7)
    # The moments are drawn within the time a whole run takes here, so that most signals
    # land mid-conversion on a fast machine as on a loaded one.
    proc = subprocess.Popen(bson2rec(dataset, rec), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: lock_holder(rec) == proc.pid or proc.poll() is not None)
    started = time.time()
    assert proc.wait() == 0
    whole_run = time.time() - started
    for path in record_paths(str(rec)):
        os.unlink(path)
    interrupted = 0
    for attempt in range(50):
        proc = subprocess.Popen(bson2rec(dataset, rec), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        wait_for(lambda: lock_holder(rec) == proc.pid or proc.poll() is not None)
        time.sleep(rng.uniform(0, 0.8 * whole_run))
        sent = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"run {attempt} hung after Ctrl-C")
        assert time.time() - sent < 2
        # A worker killed through PR_SET_PDEATHSIG goes a moment after its parent.
        gone = time.time() + 1
        while processes_of_group(proc.pid) and time.time() < gone:
            time.sleep(0.01)
        assert not processes_of_group(proc.pid), f"run {attempt} left processes behind"
        published = os.path.exists(record_paths(str(rec))[2])
        if proc.returncode == 130:
            assert err.endswith("bson2rec: interrupted\n") and "Traceback" not in err, err
            interrupted += not published
        else:     # done before the signal, which then may have ended the exiting interpreter (-2)
            assert proc.returncode in (0, -signal.SIGINT) and published, err
        if published:         # whatever the moment, a published output is the whole output: start over
            assert file_bytes(*record_paths(str(rec))) == reference
            for path in record_paths(str(rec)):
                os.unlink(path)
    assert interrupted >= 25
    subprocess.run(bson2rec(dataset, rec), check=True, capture_output=True)
    assert file_bytes(*record_paths(str(rec))) == reference


# ---- 7, 9 a full disk ------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(folder, size):
    """A `size`-byte tmpfs on `folder` (root only), for a real ENOSPC."""
    folder.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def small_dataset(tmp_path):
    path = write_bson(str(tmp_path / "small.bson"), make_products(120, seed=5))
    BsonIndex.load_or_build(path)
    return path, write_categories(tmp_path / "category_names.csv")


def assert_fails_naming_the_output(result, rec):
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"bson2rec: error: [Errno " in errors[0] and str(rec) in errors[0], result.stderr
    assert not any(os.path.exists(p) for p in record_paths(str(rec))), "nothing is published"


PAGE = 4096


@pytest.mark.parametrize("room", ["none for the .rec", "the .rec but not the .idx",
                                  "the .rec and .idx but not the report"])
def test_a_full_disk_names_the_output_publishes_nothing_and_resumes(room, tmp_path):
    """A real ENOSPC on a small tmpfs: at once (the .rec is preallocated), or once the records
    are converted, while the .idx or the report is written."""
    data = small_dataset(tmp_path)
    clean = tmp_path / "clean" / "A.rec"
    subprocess.run(bson2rec(data, clean, "--part-mb", "32"), check=True, capture_output=True)
    rec_pages, idx_pages = (-(-os.path.getsize(p) // PAGE) for p in record_paths(str(clean))[:2])
    # Besides the .rec, a page each for the lock file, job.json and the one part's .done marker.
    size = PAGE * {"none for the .rec": 8, "the .rec but not the .idx": rec_pages + 3,
                   "the .rec and .idx but not the report": rec_pages + 3 + idx_pages}[room]
    with tmpfs(tmp_path / "disk", size) as disk:
        rec = disk / "A.rec"
        result = subprocess.run(bson2rec(data, rec, "--part-mb", "32"), capture_output=True, text=True)
        assert_fails_naming_the_output(result, rec)
        converted = os.path.exists(disk / ".A.parts" / "part-00000.done")
        if room == "none for the .rec":
            assert "no room for the" in result.stderr and not converted
        else:
            assert "No space left on device" in result.stderr and converted
            idx = disk / ".A.parts" / "merged.idx"
            idx_written = os.path.exists(idx) and os.path.getsize(idx) == os.path.getsize(record_paths(str(clean))[1])
            assert idx_written == (room == "the .rec and .idx but not the report")
        subprocess.run(["mount", "-o", f"remount,size={PAGE * (2 * rec_pages + 64)}", str(disk)], check=True)
        resumed = subprocess.run(bson2rec(data, rec, "--part-mb", "32"), check=True, capture_output=True, text=True)
        assert ("resuming: 1 of 1 parts done" in resumed.stderr) == converted
        assert file_bytes(*record_paths(str(rec))) == file_bytes(*record_paths(str(clean)))


def test_a_file_size_limit_names_the_output_and_publishes_nothing(tmp_path):
    """Where no tmpfs can be mounted: RLIMIT_FSIZE gives EFBIG, the same path as ENOSPC."""
    data = small_dataset(tmp_path)
    rec = tmp_path / "out" / "A.rec"

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    result = subprocess.run(bson2rec(data, rec), capture_output=True, text=True, preexec_fn=limit_file_size)
    assert_fails_naming_the_output(result, rec)
    assert "File too large" in result.stderr or "no room" in result.stderr
