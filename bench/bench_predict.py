"""Benchmark: the ZeroMQ prediction pipeline against the same work over multiprocessing.Queue.

    python bench/bench_predict.py                                   # CPU: dpn_tiny and pool_dense
    python bench/bench_predict.py --devices gpu:0 --models dpn92,pool_dense --batch-size 256 --products 4000

Measured in one run, each measurement in a fresh process, on synthetic test BSON files
(data.synth, generated once under bench/out/):

- products/s of `predict.pipeline.run_pipeline` (ZeroMQ) and of the same stages (reader,
  decoders, one model worker per device, collector: the same functions) joined by
  `multiprocessing.Queue`, with 1 and 2 decoders, plus the single-process loop;
- peak memory (PSS summed over the whole process tree, sampled every 0.2 s) of the
  ZeroMQ pipeline on N and 4N products: flat memory means the ratio stays near 1 (N
  should make a file larger than the reader's 16 MB read chunk: the default 2000
  products is ~19 MB).

Each network is measured twice over: a real one (default dpn_tiny; dpn92 and the like
on a GPU) and `pool_dense`, global pooling and one Dense layer, under which reading,
decoding, the transport and the collector set the pace.

products/s counts from the moment the model workers are ready (model loading excluded)
to the last product written. The model is built fresh (random weights: the cost is the
same), on the device(s) given, so the same command measures a GPU machine. Results:
bench/results/predict.md and .json. ``--backend torch``: PyTorch model workers, the whole
pipeline against the model alone (bench/bench_predict_torch.py), with ``--decode-on
device`` the pictures decoded by the model worker on its device.
"""
import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading

from data.cli import add_device_options

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


# ------------------------------------------------------------------------------------------
# The baseline: the pipeline's stages over multiprocessing.Queue
# ------------------------------------------------------------------------------------------
def _queue_reader(source, products, n_decoders):
    for product in source:
        products.put(product)
    for _ in range(n_decoders):
        products.put(None)


def _queue_decoder(products, decoded, config):
    from predict.decode import decode_product
    while True:
        product = products.get()
        if product is None:
            decoded.put(None)
            return
        decoded.put(decode_product(product, config.views, config.skip_bad_images))


def _queue_model_worker(handles, device, config, decoded, results, ready, n_decoders):
    from predict.inference import Batcher, ModelRunner, parse_device
    runner = ModelRunner(handles, parse_device(device))
    ready.put(runner.describe())
    batcher, ended = Batcher(config.batch_size), 0
    while ended < n_decoders:
        item = decoded.get()
        if item is None:
            ended += 1
            continue
        for batch in batcher.add(item):
            for result in runner.predict_products(batch, config.views.count):
                results.put(result)
    for result in runner.predict_products(batcher.take(), config.views.count):
        results.put(result)
    results.put(None)


def queue_pipeline(source, handles, make_aggregator, config):
    """`run_pipeline`'s work with multiprocessing.Queue between the processes (no supervision)."""
    if len(config.devices) > 1:
        raise ValueError("the Queue baseline runs one model worker (one device)")
    mp = multiprocessing.get_context("fork")
    products, decoded, results, ready = (mp.Queue(config.queue_size) for _ in range(4))
    worker = mp.Process(target=_queue_model_worker, daemon=True,
                         args=(handles, config.devices[0], config, decoded, results, ready, config.decoders))
    worker.start()
    models = ready.get()
    aggregator = make_aggregator(models)
    others = [mp.Process(target=_queue_reader, args=(source, products, config.decoders), daemon=True)] + \
        [mp.Process(target=_queue_decoder, args=(products, decoded, config), daemon=True)
         for _ in range(config.decoders)]
    for p in others:
        p.start()
    n = 0
    while True:
        item = results.get()
        if item is None:
            break
        aggregator.add(*item)
        n += 1
    for p in [worker] + others:
        p.join()
    return aggregator.finish(n)


# ------------------------------------------------------------------------------------------
# One measurement (in its own process)
# ------------------------------------------------------------------------------------------
POOL_DENSE = "pool_dense"


def pool_dense(classes):
    """Global average pooling and one Dense layer: a network that costs almost nothing, so
    that reading, decoding, the transport and the collector set the pace."""
    from mxnet.gluon import nn
    net = nn.HybridSequential(prefix="pool_dense_")
    net.add(nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(classes))
    return net


class FreshModel:
    """A registered network (or `pool_dense`) with fresh weights: what matters here is its cost."""

    def __init__(self, name, classes):
        self.name, self.classes = name, classes

    def load(self, ctx):
        import mxnet as mx
        import models
        from predict.inference import LoadedModel
        from train.run_folder import Preprocessing
        if self.name == POOL_DENSE:
            net = pool_dense(self.classes)
            net.initialize(mx.init.Xavier(), ctx=ctx)
            mean, scale = (0.0, 0.0, 0.0), 1.0
        else:
            spec = models.get_spec(self.name)
            net, mean, scale = models.get_model(self.name, classes=self.classes, ctx=ctx), spec.mean, spec.scale
        preprocess = Preprocessing((3, 180, 180), "RGB", mean, scale, "raw")
        return LoadedModel(self.name, net, preprocess, self.classes, {"weights": "random"})


class MemorySampler:
    """Peak PSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, period=0.2):
        import psutil
        self.psutil, self.period, self.peak = psutil, period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self):
        me = self.psutil.Process()
        total = 0
        for proc in [me] + me.children(recursive=True):
            try:
                total += proc.memory_full_info().pss
            except self.psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure_here(spec):
    from predict.aggregate import Aggregator
    from predict.decode import Views
    from predict.pipeline import PipelineConfig, run_in_process, run_pipeline
    from predict.sources import open_source

    source = open_source(spec["bson"], progress=False)
    config = PipelineConfig(decoders=spec["decoders"], batch_size=spec["batch_size"], views=Views.parse(spec["tta"]),
                            devices=tuple(spec["devices"]), progress=False)
    out = tempfile.mkdtemp(prefix="bench-predict-", dir=OUT)

    def make_aggregator(models):
        return Aggregator(lambda name: os.path.join(out, name), models, ("mean",), ("none",), 5, {})

    run = {"zmq": run_pipeline, "queue": queue_pipeline, "in-process": run_in_process}[spec["kind"]]
    try:
        with MemorySampler() as memory:
            manifest = run(source, [FreshModel(spec["model"], spec["classes"])], make_aggregator, config)[0]
    finally:
        shutil.rmtree(out)
    return {**spec, "products": manifest["products"], "images": manifest["images"],
            "seconds": manifest["elapsed_seconds"], "products_per_second": manifest["products_per_second"],
            "peak_pss_mb": memory.peak / 2 ** 20}


def in_fresh_process(script, spec):
    """The measurement of `spec` by ``script --worker SPEC`` (a fresh process): its last
    line of output, JSON."""
    out = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(spec):
    result = in_fresh_process(__file__, spec)
    print(f"  {result['model']:>12} {result['kind']:>10}  decoders {result['decoders']}  "
          f"{result['products']:>6} products  {result['products_per_second']:8.1f} products/s  "
          f"peak {result['peak_pss_mb']:7.0f} MB", flush=True)
    return result


def ensure_bson(products):
    """A synthetic test.bson of `products` products (generated once, then reused)."""
    from data import synth
    folder = os.path.join(OUT, f"predict_synth_{products}")
    path = os.path.join(folder, "test.bson")
    if not os.path.exists(path):
        synth.generate(folder, train_products=0, test_products=products, categories=200, seed=2, progress=False)
    return path


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def best(results, **match):
    rows = [r for r in results if all(r[k] == v for k, v in match.items())]
    return max(rows, key=lambda r: r["products_per_second"])


def model_report(results, model, n):
    zq = {d: best(results, model=model, kind="zmq", decoders=d, products=n) for d in (1, 2)}
    qq = {d: best(results, model=model, kind="queue", decoders=d, products=n) for d in (1, 2)}
    single = best(results, model=model, kind="in-process", products=n)
    small, large = zq[2], best(results, model=model, kind="zmq", decoders=2, products=4 * n)
    lines = [f"## {model}" + (" (global pooling + Dense: the pipeline itself sets the pace)"
                              if model == POOL_DENSE else ""), "",
             "| pipeline | decoders | products/s | peak PSS (MB) |", "|---|---:|---:|---:|"]
    lines += [f"| multiprocessing.Queue (baseline) | {d} | {qq[d]['products_per_second']:.1f} | "
              f"{qq[d]['peak_pss_mb']:.0f} |" for d in (1, 2)]
    lines += [f"| ZeroMQ | {d} | {zq[d]['products_per_second']:.1f} | {zq[d]['peak_pss_mb']:.0f} |" for d in (1, 2)]
    lines += [f"| single process (no pipeline) | 0 | {single['products_per_second']:.1f} | "
              f"{single['peak_pss_mb']:.0f} |", ""]
    lines += [
        f"- Ratio ZeroMQ / Queue: **{zq[1]['products_per_second'] / qq[1]['products_per_second']:.2f}** with 1 "
        f"decoder, **{zq[2]['products_per_second'] / qq[2]['products_per_second']:.2f}** with 2.",
        f"- Scaling 1 -> 2 decoders: ZeroMQ **{zq[2]['products_per_second'] / zq[1]['products_per_second']:.2f}x**, "
        f"Queue {qq[2]['products_per_second'] / qq[1]['products_per_second']:.2f}x.",
        f"- Peak memory of the ZeroMQ pipeline (2 decoders): {small['peak_pss_mb']:.0f} MB on {small['products']} "
        f"products, {large['peak_pss_mb']:.0f} MB on {large['products']} products: ratio "
        f"**{large['peak_pss_mb'] / small['peak_pss_mb']:.2f}** for 4x the input.", ""]
    return lines


def report(results, args, load_before):
    cpu = platform.processor() or platform.machine()
    first = results[0]
    lines = [
        "# Prediction pipeline: ZeroMQ against multiprocessing.Queue", "",
        f"{args.classes} classes, random weights, TTA {args.tta}, batch {args.batch_size}, devices "
        f"{','.join(args.devices)}; synthetic test BSON of {args.products} products ({first['images']} images), "
        f"{4 * args.products} for the memory check; {cpu}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; best of {args.repeats}. 1-minute load average before / after: "
        f"{load_before:.1f} / {os.getloadavg()[0]:.1f} (other work shares these cores).", ""]
    for model in args.models:
        lines += model_report(results, model, args.products)
    text = "\n".join(lines)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "predict.md"), "w") as f:
        f.write(text)
    with open(os.path.join(HERE, "results", "predict.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=2)
    print(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--products", type=int, default=2000,
                   help="N: products of the main input (the memory check also runs 4N)")
    p.add_argument("--models", default=f"dpn_tiny,{POOL_DENSE}",
                   help=f"comma-separated registered networks, or {POOL_DENSE} (default dpn_tiny,{POOL_DENSE})")
    p.add_argument("--classes", type=int, default=5270)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tta", default="flip")
    p.add_argument("--repeats", type=int, default=1, help="runs of each throughput measurement (best kept)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--backend", choices=("mxnet", "torch"), default="mxnet",
                   help="torch: PyTorch model workers, the whole pipeline against the model alone "
                        "(bench/bench_predict_torch.py; networks other than pool_dense)")
    p.add_argument("--decoders", type=int, default=2, help="decoder processes of --backend torch (default 2)")
    p.add_argument("--input", help="a .rec or .bson for --backend torch (default: the synthetic BSON of --products)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (--backend torch)")
    p.add_argument("--decode-on", choices=("decoders", "device"), default="decoders",
                   help="--backend torch: where the pictures are decoded, by the decoder processes (default) or "
                        "by the model worker on its device (nvJPEG on GPUs; predict.py --decode-on)")
    add_device_options(p, help_text="cpu or gpu:0 (one model worker per device)")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(measure_here(json.loads(args.worker))))
        return
    args.models = [m for m in args.models.split(",") if m]
    if args.decode_on == "device" and args.backend != "torch":
        p.error("--decode-on device needs --backend torch (PyTorch model workers)")
    if args.backend == "torch":
        from bench_predict_torch import main_torch
        return main_torch(args)
    load_before = os.getloadavg()[0]
    os.makedirs(OUT, exist_ok=True)
    small, large = ensure_bson(args.products), ensure_bson(4 * args.products)
    results = []
    for model in args.models:
        common = dict(model=model, classes=args.classes, devices=args.devices, batch_size=args.batch_size,
                      tta=args.tta)
        for _ in range(args.repeats):
            for decoders in (1, 2):
                for kind in ("queue", "zmq"):
                    results.append(measure(dict(common, kind=kind, decoders=decoders, bson=small)))
            results.append(measure(dict(common, kind="in-process", decoders=0, bson=small)))
        results.append(measure(dict(common, kind="zmq", decoders=2, bson=large)))
    report(results, args, load_before)


if __name__ == "__main__":
    main()
