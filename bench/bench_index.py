"""Benchmark: BSON index building against a plain sequential read of the same file.

    python bench/bench_index.py --size-gb 1     # generates bench/out/synth_1gb/ once (make_big_bson.py)
    python bench/bench_index.py --bson /data/train.bson [more.bson ...]

Each measurement runs in a fresh process (so its peak RSS is its own) in the order
read, index, read, index; page cache is dropped before each one when this user may
(root on Linux), otherwise all runs are warm-cache and the report says so. Results go to
bench/results/index.md and .json.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from bench_common import HERE

CHUNK = 16 * 1024 * 1024


def plain_read(path):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                return total
            total += n


def build_index(path):
    from data.bson_index import BsonIndex
    return len(BsonIndex.build(path))


def run_worker(task, path):
    """Child process: time one task, print JSON with seconds and peak RSS."""
    if task == "index":   # import before timing, as a long-running user process would have
        import data.bson_index  # noqa: F401
    start = time.perf_counter()
    result = {"read": plain_read, "index": build_index}[task](path)
    seconds = time.perf_counter() - start
    print(json.dumps({"task": task, "seconds": seconds, "result": result,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def drop_page_cache():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def measure(task, path, cold):
    if cold:
        drop_page_cache()
    out = subprocess.run([sys.executable, __file__, "--worker", task, path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ensure_bson(size_gb, out_dir):
    """A synthetic train.bson of about `size_gb` GB (generated once by make_big_bson, then reused)."""
    folder = os.path.join(out_dir, f"synth_{size_gb:g}gb")
    path = os.path.join(folder, "train.bson")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(HERE, "make_big_bson.py"), "--out", folder,
                        "--gb", str(size_gb)], check=True)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bson", nargs="+", help="BSON file(s) to index (default: a generated synthetic one)")
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the generated file")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "out"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(*args.worker)

    paths = args.bson or [ensure_bson(args.size_gb, args.out_dir)]
    cold = drop_page_cache()
    reports = [bench_file(path, cold, args.repeat) for path in paths]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "index.json"), "w") as f:
        json.dump(reports, f, indent=2)
    rows = "".join(
        f"| {r['bytes'] / 1e9:.2f} GB, {r['products']:,} products | {r['read_mb_s']:.0f} | {r['index_mb_s']:.0f} "
        f"| **{r['ratio_index_to_read']:.2f}** | {r['index_products_per_s']:,.0f} | {r['peak_rss_mb']['read']:.0f} "
        f"| {r['peak_rss_mb']['index']:.0f} |\n" for r in reports)
    md = (f"# Index building vs plain sequential read\n\n"
          f"{reports[0]['machine']}; page cache {reports[0]['page_cache']} before each run; best of {args.repeat}.\n\n"
          f"| input | plain read (baseline) MB/s | build index MB/s | ratio index / read (target ≥ 0.5) "
          f"| products/s | peak RSS read (MB) | peak RSS index (MB) |\n|---|---|---|---|---|---|---|\n{rows}")
    with open(os.path.join(HERE, "results", "index.md"), "w") as f:
        f.write(md)
    print(md)


def bench_file(path, cold, repeat):
    """Best-of-`repeat` read and index times of one file, each in a fresh process."""
    size = os.path.getsize(path)
    runs = []
    for _ in range(repeat):
        for task in ("read", "index"):
            runs.append(measure(task, path, cold))
            print(f"{task:5s} {size / runs[-1]['seconds'] / 1e6:8.1f} MB/s  peak RSS {runs[-1]['peak_rss_mb']:.0f} MB",
                  flush=True)
    best = {t: min(r["seconds"] for r in runs if r["task"] == t) for t in ("read", "index")}
    products = next(r["result"] for r in runs if r["task"] == "index")
    return {
        "file": path, "bytes": size, "products": products, "page_cache": "dropped" if cold else "warm",
        "read_mb_s": size / best["read"] / 1e6, "index_mb_s": size / best["index"] / 1e6,
        "ratio_index_to_read": best["read"] / best["index"], "index_products_per_s": products / best["index"],
        "peak_rss_mb": {t: max(r["peak_rss_mb"] for r in runs if r["task"] == t) for t in ("read", "index")},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


if __name__ == "__main__":
    main()
