"""Benchmark of the prediction pipeline with PyTorch model workers (``bench_predict.py
--backend torch``): the whole predictor against the model alone, in one run.

    python bench/bench_predict.py --backend torch --models dpn_tiny --products 500       # CPU
    python bench/bench_predict.py --backend torch --models dpn92 --devices gpu:0 --batch-size 256 \\
        --decoders 14 --input /data/rec/test.rec --products 20000
    python bench/bench_predict.py --backend torch --decode-on device ...     # nvJPEG in the worker

For each network, in a fresh process: products/s, images/s and network inputs/s (images x
views) of `predict.pipeline.run_pipeline` with PyTorch model workers (reader, decoders,
one worker per device, collector: decoding included), from the moment the workers are
ready to the last product written; then, in the same process once the pipeline has ended,
the model alone on the first device: ``predict.torch_runner.TorchRunner.probabilities`` on
random uint8 views of the same batch size (the upload, the preprocessing on the device,
the forward pass in bf16 on a GPU and the softmax; no decoding), after warm-up batches.
The ratio of the two says how much of the model's rate the pipeline delivers. Random
weights (the cost is the same); ``--input``: a `.rec` or `.bson` to predict (default: the
synthetic test BSON of ``--products`` products). ``--decode-on device``: the decoders only
check the pictures and take their MD5s, the model worker decodes each batch on its device
(predict.torch_runner.TorchRunner.predict_jpegs). Results: bench/results/predict_torch.md
and .json (``--decode-on device``: predict_torch.decode-on-device.md and .json; ``--out``);
the mode is named in them. This module imports PyTorch: never MXNet.
"""
import json
import os
import platform
import sys
import time

import numpy as np

from bench_predict_common import POOL_DENSE, FreshModel, ensure_bson, in_fresh_process, predict_once, write_results
from models import get_spec
from models.torch_nets import create_torch_model
from predict.decode import Views
from predict.pipeline import PipelineConfig, run_pipeline
from predict.sources import open_source
from predict.torch_runner import TorchRunner, prepared

WARMUP_BATCHES = 3


class FreshTorchModel(FreshModel):
    """The timm twin of a registered network with fresh weights, its input normalised as the
    network's spec says, prepared as the predictor prepares a checkpoint's
    (``predict.torch_runner.prepared``: evaluation mode, channels_last on a GPU, compiled
    with `compile`)."""

    def __init__(self, name, classes, compile=False):
        spec = get_spec(name)
        super().__init__(name, classes, "torch", spec.mean, spec.scale, compile)

    def load(self, runner):
        return prepared(create_torch_model(self.name, self.classes), runner.device, self.compile)


def model_alone(handle, device, batch_size, seconds, decoders):
    """Network inputs/s of `handle` alone on `device`: random uint8 views of `batch_size`
    through `TorchRunner.probabilities` for about `seconds` after the warm-up batches, with
    the CPU threads of the pipeline's model worker (beside `decoders` decoders)."""
    runner = TorchRunner([handle], device)
    runner.share_cores(1 + decoders)          # the threads of the pipeline's model worker
    pixels = np.random.RandomState(0).randint(0, 256, (batch_size, 180, 180, 3), dtype=np.uint8)
    for _ in range(WARMUP_BATCHES):
        runner.probabilities(pixels)
    batches, start = 0, time.perf_counter()
    while batches < 2 or time.perf_counter() - start < seconds:
        runner.probabilities(pixels)          # returns numpy: the device has finished
        batches += 1
    return batches * batch_size / (time.perf_counter() - start)


def measure_here(spec):
    views = Views.parse(spec["tta"])
    config = PipelineConfig(decoders=spec["decoders"], batch_size=spec["batch_size"], views=views,
                            devices=tuple(spec["devices"]), progress=False, decode_on=spec["decode_on"])
    handle = FreshTorchModel(spec["model"], spec["classes"], spec["compile"])
    manifest = predict_once(run_pipeline, open_source(spec["input"], progress=False), [handle], config, spec["work"])
    seconds = manifest["elapsed_seconds"]
    return {**spec, "products": manifest["products"], "images": manifest["images"], "views": views.count,
            "seconds": seconds, "products_per_second": manifest["products"] / seconds,
            "images_per_second": manifest["images"] / seconds,
            "inputs_per_second": manifest["images"] * views.count / seconds,
            "model_inputs_per_second": model_alone(handle, spec["devices"][0], spec["batch_size"],
                                                   min(max(seconds, 5.0), 30.0), spec["decoders"])}


def measure(spec):
    result = in_fresh_process(__file__, spec)
    print(f"  {result['model']:>12}  {result['products']:>6} products  {result['products_per_second']:8.1f} "
          f"products/s  {result['inputs_per_second']:8.1f} inputs/s  model alone "
          f"{result['model_inputs_per_second']:8.1f} inputs/s", flush=True)
    return result


def report(results, args, load_before):
    decoded_by = ("by the model worker on its device (--decode-on device)" if args.decode_on == "device"
                  else "by the decoders (--decode-on decoders)")
    lines = [
        "# Prediction pipeline with PyTorch model workers: the whole pipeline against the model alone", "",
        f"{args.classes} classes, random weights, TTA {args.tta} ({results[0]['views']} views), batch "
        f"{args.batch_size} network inputs, {args.decoders} decoders, pictures decoded {decoded_by}, "
        f"devices {','.join(args.devices)}"
        f"{', torch.compile' if args.compile else ''}; input {results[0]['input']} ({results[0]['products']} "
        f"products, {results[0]['images']} images); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. 1-minute load average before / after: "
        f"{load_before:.1f} / {os.getloadavg()[0]:.1f} (other work shares these cores).", "",
        "| network | products/s | images/s | inputs/s (images x views) | model alone, inputs/s | pipeline / model |",
        "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['products_per_second']:.1f} | {r['images_per_second']:.1f} | "
              f"{r['inputs_per_second']:.1f} | {r['model_inputs_per_second']:.1f} | "
              f"{r['inputs_per_second'] / r['model_inputs_per_second']:.2f} |" for r in results]
    write_results("\n".join(lines) + "\n", args, results,
                  "predict_torch" + (".decode-on-device" if args.decode_on == "device" else ""))


def main(args):
    """``bench_predict.py --backend torch``: its parsed arguments."""
    load_before = os.getloadavg()[0]
    os.makedirs(args.work, exist_ok=True)
    source = args.input or ensure_bson(args.work, args.products)
    networks = [m for m in args.models if m != POOL_DENSE]
    if len(networks) < len(args.models):
        print(f"  {POOL_DENSE} is an MXNet network: left out of --backend torch", flush=True)
    results = [measure(dict(model=model, classes=args.classes, devices=list(args.devices),
                            batch_size=args.batch_size, tta=args.tta, decoders=args.decoders, input=source,
                            compile=args.compile, decode_on=args.decode_on, work=args.work))
               for model in networks]
    report(results, args, load_before)
    return 0


if __name__ == "__main__":        # the measurement process: bench_predict_torch.py --worker SPEC
    print(json.dumps(measure_here(json.loads(sys.argv[2]))))
