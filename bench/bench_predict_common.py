"""What the prediction benchmarks share (``bench_predict.py`` dispatching to
``bench_predict_mxnet.py`` or ``bench_predict_torch.py``), framework-free: the command line,
the synthetic input, fresh-model handles, one prediction into a throw-away folder with the
predictor's own collector, the multiprocessing.Queue baseline, measurements in fresh
processes, memory sampling and the result files.

A measurement runs in a fresh process (`in_fresh_process`): ``bench_predict_<backend>.py
--worker SPEC`` prints its result as the last line, JSON. The handles are the predictor's
kind (``predict.checkpoints.CheckpointModel``'s interface: ``name``, ``backend``,
``preprocessing``, ``classes``, ``describe()``, ``load(runner)``) with an untrained network
(`FreshModel`, whose ``load`` each backend's module gives): what matters here is its cost.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from bench_common import OUT, RESULTS, add_backend_option
from data.cli import add_device_options, positive_int
from data.images import KAGGLE_IMAGE_SHAPE
from models.backends import get_backend
from models.runs import Preprocessing
from predict.aggregate import Aggregator
from predict.decode import DECODE_ON, decode_product
from predict.pipeline import run_in_process, run_pipeline
from predict.runner import Batcher, model_groups, open_runner

POOL_DENSE = "pool_dense"     # global pooling and one dense layer: the pipeline itself sets the pace


def build_parser():
    """The command line of ``bench_predict.py``, every backend's options."""
    p = argparse.ArgumentParser(prog="bench_predict.py", description="Benchmark of the prediction pipeline "
                                "(MXNet: ZeroMQ against multiprocessing.Queue; PyTorch: the whole pipeline against "
                                "the model alone).")
    add_backend_option(p)
    p.add_argument("--products", type=positive_int, default=2000,
                   help="N: products of the main input (the memory check also runs 4N)")
    p.add_argument("--models", default=f"dpn_tiny,{POOL_DENSE}",
                   help=f"comma-separated registered networks, or {POOL_DENSE} (default dpn_tiny,{POOL_DENSE})")
    p.add_argument("--classes", type=positive_int, default=5270)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--tta", default="flip")
    p.add_argument("--repeats", type=positive_int, default=1, help="runs of each throughput measurement (best kept)")
    p.add_argument("--decoders", type=positive_int, default=2, help="decoder processes of --backend torch (default 2)")
    p.add_argument("--input", help="a .rec or .bson for --backend torch (default: the synthetic BSON of --products)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (--backend torch)")
    p.add_argument("--decode-on", choices=DECODE_ON, default="decoders",
                   help="where the pictures are decoded: by the decoder processes (default) or by the model worker "
                        "on its device (nvJPEG on GPUs; predict.py --decode-on; backends that decode on their device)")
    p.add_argument("--work", default=OUT, help="scratch folder: the synthetic test BSON, the predictions (deleted)")
    p.add_argument("--out", help="the Markdown report, its JSON beside it (default: bench/results/predict*.md)")
    add_device_options(p, help_text="cpu or gpu:0 (one model worker per device)")
    return p


def ensure_bson(work, products):
    """A synthetic test.bson of `products` products under `work` (generated once, then reused)."""
    from data import synth
    folder = os.path.join(work, f"predict_synth_{products}")
    path = os.path.join(folder, "test.bson")
    if not os.path.exists(path):
        synth.generate(folder, train_products=0, test_products=products, categories=200, seed=2, progress=False)
    return path


class FreshModel:
    """A registered network (or `POOL_DENSE`) with fresh weights on backend `backend`, as the
    predictor runs a checkpoint (``predict.checkpoints.CheckpointModel``); input: the Kaggle
    pictures' size, raw 0-255 pixels (`mean`, `scale` given otherwise). A backend's
    benchmark gives ``load(runner)``: the untrained network on the runner's device."""

    def __init__(self, name, classes, backend, mean=(0.0, 0.0, 0.0), scale=1.0, compile=False):
        self.name, self.classes, self.compile = name, classes, compile
        self.backend = get_backend(backend)
        self.preprocessing = Preprocessing(KAGGLE_IMAGE_SHAPE, "RGB", tuple(mean), float(scale), "raw")

    def describe(self):
        return {"name": self.name, "classes": self.classes, **self.preprocessing.as_meta(), "class_histogram": None,
                "framework": self.backend.name, "weights": "random"}

    def load(self, runner):
        raise NotImplementedError


def predict_once(run, source, handles, config, work):
    """The manifest of predicting `source` with `handles` by `run` (``run_pipeline``,
    ``run_in_process`` or `queue_pipeline`) into a folder under `work`, deleted afterwards;
    `config` (a ``predict.pipeline.PipelineConfig``) is sized for the models here."""
    out = tempfile.mkdtemp(prefix="bench-predict-", dir=work)
    try:
        aggregator = Aggregator(lambda name: os.path.join(out, name), [h.describe() for h in handles], ("mean",),
                                ("none",), 5, {}, [numbers for _, numbers in model_groups(handles)])
        return run(source, handles, aggregator, config.for_models(handles))[0]
    finally:
        shutil.rmtree(out)


# ------------------------------------------------------------------------------------------
# The baseline: the pipeline's stages over multiprocessing.Queue
# ------------------------------------------------------------------------------------------
def _queue_reader(source, products, n_decoders):
    for product in source:
        products.put(product)
    for _ in range(n_decoders):
        products.put(None)


def _queue_decoder(products, decoded, config):
    while True:
        product = products.get()
        if product is None:
            decoded.put(None)
            return
        decoded.put(decode_product(product, config.views, config.skip_bad_images))


def _queue_model_worker(handles, config, decoded, results, ready):
    runner = open_runner(handles, config.devices[0], 1 + config.decoders)
    ready.put(True)
    batcher, ended = Batcher(config.batch_size, config.views.count), 0
    while ended < config.decoders:
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


def queue_pipeline(source, handles, aggregator, config):
    """`run_pipeline`'s work with multiprocessing.Queue between the processes (no
    supervision; one model worker, models of one backend)."""
    if len(config.devices) > 1 or len(model_groups(handles)) > 1:
        raise ValueError("the Queue baseline runs one model worker (one device, one backend)")
    mp = multiprocessing.get_context("fork")
    products, decoded, results, ready = (mp.Queue(config.queue_size) for _ in range(4))
    worker = mp.Process(target=_queue_model_worker, daemon=True, args=(handles, config, decoded, results, ready))
    worker.start()
    ready.get()
    aggregator.start_clock()                # from the model worker's readiness, as run_pipeline
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


# The pipelines a measurement compares, by the name its spec gives.
PIPELINES = {"zmq": run_pipeline, "queue": queue_pipeline, "in-process": run_in_process}


# ------------------------------------------------------------------------------------------
# Measurements in fresh processes
# ------------------------------------------------------------------------------------------
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


def in_fresh_process(script, spec):
    """The measurement of `spec` by ``script --worker SPEC`` (a fresh process, which prints
    it as its last line of output, JSON)."""
    out = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_results(text, args, results, default_stem):
    """The report `text` to ``--out`` (default ``bench/results/<default_stem>.md``), and beside
    it the same stem ``.json`` with the arguments and every result."""
    out = args.out or os.path.join(RESULTS, default_stem + ".md")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=2)
    print(text)
    print("written to %s" % out)
