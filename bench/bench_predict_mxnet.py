"""Benchmark of the prediction pipeline with MXNet model workers: ZeroMQ against the same work
over multiprocessing.Queue (``python bench/bench_predict.py``).

    python bench/bench_predict.py                                   # CPU: dpn_tiny and pool_dense
    python bench/bench_predict.py --devices gpu:0 --models dpn92,pool_dense --batch-size 256 --products 4000

Measured in one run, each measurement in a fresh process, on synthetic test BSON files
(data.synth, generated once under ``--work``):

- products/s of `predict.pipeline.run_pipeline` (ZeroMQ) and of the same stages (reader,
  decoders, one model worker per device, collector: the same functions) joined by
  `multiprocessing.Queue` (``bench_predict_common.queue_pipeline``), with 1 and 2 decoders,
  plus the single-process loop (``run_in_process``);
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
bench/results/predict.md and .json (``--out``). This module imports MXNet: never PyTorch.
"""
import json
import os
import platform
import sys

import mxnet as mx
from mxnet.gluon import nn

from bench_predict_common import (POOL_DENSE, PIPELINES, FreshModel, MemorySampler, ensure_bson, in_fresh_process,
                                  predict_once, write_results)
from models.mxnet_nets import get_model
from predict.decode import Views
from predict.pipeline import PipelineConfig
from predict.sources import open_source


def pool_dense(classes):
    """Global average pooling and one Dense layer: a network that costs almost nothing, so
    that reading, decoding, the transport and the collector set the pace."""
    net = nn.HybridSequential(prefix="pool_dense_")
    net.add(nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(classes))
    return net


class FreshGluonModel(FreshModel):
    """A registered network (or `POOL_DENSE`) with fresh Gluon weights, raw 0-255 input."""

    def __init__(self, name, classes):
        super().__init__(name, classes, "mxnet")

    def load(self, runner):
        if self.name != POOL_DENSE:
            return get_model(self.name, classes=self.classes, ctx=runner.ctx)
        net = pool_dense(self.classes)
        net.initialize(mx.init.Xavier(), ctx=runner.ctx)
        return net


def measure_here(spec):
    source = open_source(spec["bson"], progress=False)
    config = PipelineConfig(decoders=spec["decoders"], batch_size=spec["batch_size"], views=Views.parse(spec["tta"]),
                            devices=tuple(spec["devices"]), progress=False)
    with MemorySampler() as memory:
        manifest = predict_once(PIPELINES[spec["kind"]], source, [FreshGluonModel(spec["model"], spec["classes"])],
                                config, spec["work"])
    return {**spec, "products": manifest["products"], "images": manifest["images"],
            "seconds": manifest["elapsed_seconds"], "products_per_second": manifest["products_per_second"],
            "peak_pss_mb": memory.peak / 2 ** 20}


def measure(spec):
    result = in_fresh_process(__file__, spec)
    print(f"  {result['model']:>12} {result['kind']:>10}  decoders {result['decoders']}  "
          f"{result['products']:>6} products  {result['products_per_second']:8.1f} products/s  "
          f"peak {result['peak_pss_mb']:7.0f} MB", flush=True)
    return result


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
        f"{platform.python_version()}, MXNet {mx.__version__}; best of {args.repeats}. 1-minute load average "
        f"before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} (other work shares these cores).", ""]
    for model in args.models:
        lines += model_report(results, model, args.products)
    write_results("\n".join(lines), args, results, "predict")


def main(args):
    """``bench_predict.py`` with MXNet model workers: its parsed arguments."""
    load_before = os.getloadavg()[0]
    os.makedirs(args.work, exist_ok=True)
    small, large = ensure_bson(args.work, args.products), ensure_bson(args.work, 4 * args.products)
    results = []
    for model in args.models:
        common = dict(model=model, classes=args.classes, devices=list(args.devices), batch_size=args.batch_size,
                      tta=args.tta, work=args.work)
        for _ in range(args.repeats):
            for decoders in (1, 2):
                for kind in ("queue", "zmq"):
                    results.append(measure(dict(common, kind=kind, decoders=decoders, bson=small)))
            results.append(measure(dict(common, kind="in-process", decoders=0, bson=small)))
        results.append(measure(dict(common, kind="zmq", decoders=2, bson=large)))
    report(results, args, load_before)
    return 0


if __name__ == "__main__":        # the measurement process: bench_predict_mxnet.py --worker SPEC
    print(json.dumps(measure_here(json.loads(sys.argv[2]))))
