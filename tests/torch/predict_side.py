"""The MXNet half of the PyTorch predictor's tests, run as its own process (never imported
by pytest, which has PyTorch loaded).

    python tests/torch/predict_side.py FOLDER

Builds in FOLDER the MXNet test suite's prediction world (tests/predict_world.py: synthetic
BSON files, the category map, two tiny Gluon runs trained a few steps, ``dpn_tiny`` and
``resnext_tiny``), the validation side as a ``.rec``, and the MXNet predictor's folders of
that ``.rec`` (ZeroMQ pipeline, flip views) in ``FOLDER/preds/mxnet``; writes
``FOLDER/world.json``: the paths.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from data.categories import CategoryMap  # noqa: E402
from predict.decode import Views  # noqa: E402
from predict.checkpoints import CheckpointModel  # noqa: E402
from predict.pipeline import PipelineConfig  # noqa: E402
from predict.run import predict_input  # noqa: E402
from predict_world import synthetic_world, write_val_rec  # noqa: E402

# The prediction settings both frameworks' runs of the tests use.
BATCH_SIZE = 16
VIEWS = "flip"


def main(folder):
    world = synthetic_world(folder)
    categories = CategoryMap.from_csv(world.categories)
    rec = write_val_rec(world.val_bson, categories, os.path.join(folder, "A_val.rec"))
    config = PipelineConfig(decoders=1, batch_size=BATCH_SIZE, views=Views.parse(VIEWS), progress=False,
                            stall_timeout=120)
    predict_input(rec, [CheckpointModel(run) for run in world.runs], os.path.join(folder, "preds", "mxnet"), config,
                  categories)
    with open(os.path.join(folder, "world.json"), "w", encoding="utf-8") as f:
        json.dump({"rec": rec, "categories": world.categories, "runs": list(world.runs),
                   "mxnet_preds": os.path.join(folder, "preds", "mxnet"), "batch_size": BATCH_SIZE, "views": VIEWS},
                  f)
    if "torch" in sys.modules:
        raise RuntimeError("the MXNet side imported torch")


if __name__ == "__main__":
    main(sys.argv[1])
