"""The predictor with PyTorch model workers, run as a fresh process for the PyTorch tests.

    python tests/torch/torch_predict_side.py JOB.json

The predictor forks its model workers; a process that has run PyTorch's CPU operators
before forking leaves its children hanging in their first parallel operator (GNU OpenMP
is not fork-safe: measured, a forked child blocks in a futex forever). The predictor's
parent never runs PyTorch, but the pytest process of tests/torch does (other tests): so
each prediction of the tests runs here, in a process that has not. ``JOB.json``:

- ``{"op": "predict", "rec", "categories", "runs", "backend", "out", "decoders",
  "devices", "batch_size", "views", "result"}`` and optionally ``"decode_on"``,
  ``"skip_bad_images"``, ``"ema"``: `predict.run.predict_input`; ``result`` (.json) gets
  ``{"manifests": [...]}``, or ``{"error": message}`` for a `PipelineError` (or, with
  ``decoders`` 0, the `DataInputError` of a bad picture);
- ``{"op": "kill", ...}``: the same prediction of the first run with a slow network while
  ``model worker 0`` is SIGKILLed (tests/pipeline_kills.py checks the outcome); ``result``
  gets ``{"checked": true}``.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from data.categories import CategoryMap  # noqa: E402
from data.errors import DataInputError  # noqa: E402
from pipeline_kills import assert_a_kill_ends_the_run_naming_it  # noqa: E402
from predict.decode import Views  # noqa: E402
from predict.checkpoints import CheckpointModel  # noqa: E402
from predict.pipeline import PipelineConfig, PipelineError  # noqa: E402
from predict.run import predict_input  # noqa: E402


class SlowTorchCheckpoint(CheckpointModel):
    """A Gluon run on PyTorch whose network takes `delay` seconds a batch: a run long
    enough to be killed in the middle."""

    def __init__(self, path, delay):
        super().__init__(path, backend="torch")
        self.delay = delay

    def load(self, runner):
        net = super().load(runner)

        def slow(x):
            time.sleep(self.delay)
            return net(x)

        return slow


def config(job):
    return PipelineConfig(decoders=job["decoders"], batch_size=job["batch_size"], views=Views.parse(job["views"]),
                          devices=tuple(job["devices"]), progress=False, stall_timeout=60,
                          decode_on=job.get("decode_on", "decoders"), skip_bad_images=job.get("skip_bad_images", False))


def predict(job):
    handles = [CheckpointModel(run, backend=job["backend"], ema=job.get("ema", False)) for run in job["runs"]]
    try:
        return {"manifests": predict_input(job["rec"], handles, job["out"], config(job),
                                           CategoryMap.from_csv(job["categories"]))}
    except (PipelineError, DataInputError) as err:
        return {"error": str(err)}


def kill(job):
    os.makedirs(job["out"])
    assert_a_kill_ends_the_run_naming_it("model worker", lambda: predict_input(
        job["rec"], [SlowTorchCheckpoint(job["runs"][0], delay=0.3)], job["out"], config(job),
        CategoryMap.from_csv(job["categories"])), job["out"])
    return {"checked": True}


def main(path):
    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    result = {"predict": predict, "kill": kill}[job["op"]](job)
    with open(job["result"], "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
