"""The PyTorch path of bench/bench_predict.py (``--backend torch``): the whole predictor
against the model alone, in one run.

    python bench/bench_predict.py --backend torch --models dpn_tiny --products 500       # CPU
    python bench/bench_predict.py --backend torch --models dpn92 --devices gpu:0 --batch-size 256 \\
        --decoders 14 --input /data/rec/test.rec --products 20000
    python bench/bench_predict.py --backend torch --decode-on device ...     # nvJPEG in the worker

For each network, in a fresh process: products/s, images/s and network inputs/s (images x
views) of `predict.pipeline.run_pipeline` with PyTorch model workers (reader, decoders,
one worker per device, collector: decoding included), from the moment the workers are
ready to the last product written; then, in the same process once the pipeline has ended,
the model alone on the first device: `predict.torch_models.TorchRunner.probabilities` on
random uint8 views of the same batch size (the upload, the preprocessing on the device,
the forward pass in bf16 on a GPU and the softmax; no decoding), after warm-up batches.
The ratio of the two says how much of the model's rate the pipeline delivers. Random
weights (the cost is the same); ``--input``: a `.rec` or `.bson` to predict (default: the
synthetic test BSON of ``--products`` products). ``--decode-on device``: the decoders only
check the pictures and take their MD5s, the model worker decodes each batch on its device
(predict.torch_models.TorchRunner.predict_jpegs). Results: bench/results/predict_torch.md
and .json (``--decode-on device``: predict_torch.decode-on-device.md and .json); the
mode is named in them.
"""
import json
import os
import platform
import shutil
import sys
import tempfile
import time

from bench_predict import OUT, POOL_DENSE, ensure_bson, in_fresh_process

HERE = os.path.dirname(os.path.abspath(__file__))
WARMUP_BATCHES = 3


class FreshTorchModel:
    """The PyTorch twin of a registered network with fresh weights (what matters here is its
    cost), prepared as the predictor prepares a checkpoint's (`predict.torch_models.prepared`)."""

    def __init__(self, name, classes, compile=False):
        self.name, self.classes, self.compile = name, classes, compile

    def framework(self):
        return "torch"

    def load_torch(self, device):
        import models
        from models.torch_nets import create_torch_model
        from predict.inference import LoadedModel
        from predict.torch_models import prepared
        from train.run_folder import Preprocessing
        spec = models.get_spec(self.name)
        net = prepared(create_torch_model(self.name, self.classes), device, self.compile)
        preprocess = Preprocessing((3, 180, 180), "RGB", tuple(spec.mean), spec.scale, "raw")
        return LoadedModel(self.name, net, preprocess, self.classes, {"weights": "random", "framework": "torch"})


def model_alone(handle, device, batch_size, seconds):
    """Network inputs/s of `handle` alone on `device`: random uint8 views of `batch_size`
    through `TorchRunner.probabilities` for about `seconds` after the warm-up batches."""
    import numpy as np
    from predict.torch_models import TorchRunner
    runner = TorchRunner([handle], device)
    pixels = np.random.RandomState(0).randint(0, 256, (batch_size, 180, 180, 3), dtype=np.uint8)
    for _ in range(WARMUP_BATCHES):
        runner.probabilities(pixels)
    batches, start = 0, time.perf_counter()
    while batches < 2 or time.perf_counter() - start < seconds:
        runner.probabilities(pixels)          # returns numpy: the device has finished
        batches += 1
    return batches * batch_size / (time.perf_counter() - start)


def measure_here(spec):
    from predict.aggregate import Aggregator
    from predict.decode import Views
    from predict.pipeline import PipelineConfig, run_pipeline
    from predict.sources import open_source

    source = open_source(spec["input"], progress=False)
    views = Views.parse(spec["tta"])
    config = PipelineConfig(decoders=spec["decoders"], batch_size=spec["batch_size"], views=views,
                            devices=tuple(spec["devices"]), progress=False, decode_on=spec["decode_on"])
    out = tempfile.mkdtemp(prefix="bench-predict-torch-", dir=OUT)
    handle = FreshTorchModel(spec["model"], spec["classes"], spec["compile"])

    def make_aggregator(models):
        return Aggregator(lambda name: os.path.join(out, name), models, ("mean",), ("none",), 5, {})

    try:
        manifest = run_pipeline(source, [handle], make_aggregator, config)[0]
    finally:
        shutil.rmtree(out)
    seconds = manifest["elapsed_seconds"]
    return {**spec, "products": manifest["products"], "images": manifest["images"], "views": views.count,
            "seconds": seconds, "products_per_second": manifest["products"] / seconds,
            "images_per_second": manifest["images"] / seconds,
            "inputs_per_second": manifest["images"] * views.count / seconds,
            "model_inputs_per_second": model_alone(handle, spec["devices"][0], spec["batch_size"],
                                                   min(max(seconds, 5.0), 30.0))}


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
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stem = os.path.join(HERE, "results", "predict_torch" + (".decode-on-device" if args.decode_on == "device" else ""))
    with open(stem + ".md", "w") as f:
        f.write(text)
    with open(stem + ".json", "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=2)
    print(text)


def main_torch(args):
    """bench_predict.py's ``--backend torch``: its parsed arguments."""
    load_before = os.getloadavg()[0]
    os.makedirs(OUT, exist_ok=True)
    source = args.input or ensure_bson(args.products)
    networks = [m for m in args.models if m != POOL_DENSE]
    if len(networks) < len(args.models):
        print(f"  {POOL_DENSE} is an MXNet network: left out of --backend torch", flush=True)
    results = [measure(dict(model=model, classes=args.classes, devices=list(args.devices),
                            batch_size=args.batch_size, tta=args.tta, decoders=args.decoders, input=source,
                            compile=args.compile, decode_on=args.decode_on))
               for model in networks]
    report(results, args, load_before)


if __name__ == "__main__":        # the measurement process: bench_predict_torch.py --worker SPEC
    print(json.dumps(measure_here(json.loads(sys.argv[2]))))
