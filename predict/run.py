"""Predict one input file with several models into one prediction folder per model.

The function behind ``python predict/predict.py``: locks every ``<out>/<model name>/``
(`data.locks.output_lock`: a second run into the same folder fails at once, naming the
first one's pid), opens the input (predict.sources), the MD5 dictionary when an MD5 mode
needs it, runs the ZeroMQ pipeline (or, with ``decoders=0``, the in-process loop) and
writes the folders (predict.outputs). The damaged regions of the input skipped with
``skip_bad_products`` are listed in each manifest, ``skipped_documents``, each with
``row``: whether rows stand for the products lost there (predict.sources.skipped_documents).
"""
import contextlib
import datetime
import logging
import os

from data.locks import output_lock
from predict.aggregate import Aggregator
from predict.decode import Md5Counts
from predict.pipeline import check_decode_on, run_in_process, run_pipeline
from predict.runner import model_groups
from predict.sources import open_source

log = logging.getLogger(__name__)


def check_names(handles):
    names = [h.name for h in handles]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"several models are named {', '.join(duplicates)}: give distinct names (--names)")


def md5_counts_for(md5_modes, md5_dict_path, categories):
    """The per-image dictionary lookup the MD5 modes need, or None when every mode is 'none'."""
    if all(m == "none" for m in md5_modes):
        return None
    if not md5_dict_path or categories is None:
        raise ValueError(f"MD5 mode(s) {', '.join(m for m in md5_modes if m != 'none')} need an MD5 dictionary "
                         "(--md5-dict) and the category map (--categories)")
    from data.md5_dict import Md5Dictionary
    return Md5Counts(Md5Dictionary.load(md5_dict_path), categories)


def check_models(models, categories=None):
    """The models of one run must predict the same classes (one row layout per product,
    one category map): a located error naming the checkpoints (or the category file)."""
    first = models[0]

    def where(model):
        return model.get("params") or model["name"]

    for model in models[1:]:
        if model["classes"] != first["classes"]:
            raise ValueError(f"{where(model)} predicts {model['classes']} classes but {where(first)} predicts "
                             f"{first['classes']}: predict models of different class sets in separate runs")
    if categories is not None and first["classes"] != len(categories):
        raise ValueError(f"{where(first)} predicts {first['classes']} classes but {categories.path} has "
                         f"{len(categories)} categories")


def log_skipped(input_path, skipped):
    if skipped:
        log.warning("%s: %d damaged regions skipped (manifest.json: skipped_documents); rows stand for the products "
                    "lost in %d of them", input_path, len(skipped), sum(d["row"] for d in skipped))


def predict_input(input_path, handles, out_dir, config, categories=None, combiners=("mean",),
                  md5_modes=("none",), md5_dict_path=None, top_k=5, skip_bad_products=False):
    """Predict every product of `input_path` with every model of `handles`
    (predict.checkpoints.CheckpointModel), each on its backend; return the manifests."""
    check_names(handles)
    with contextlib.ExitStack() as locks:
        for handle in handles:
            locks.enter_context(output_lock(os.path.join(out_dir, handle.name)))
        source = open_source(input_path, categories, skip_bad_products, progress=config.progress)
        log_skipped(input_path, source.skipped)
        check_decode_on(config, handles)               # each checkpoint's metadata is read here, once
        models = [handle.describe() for handle in handles]
        check_models(models, categories)
        config = config.for_models(handles)
        md5_counts = md5_counts_for(md5_modes, md5_dict_path, categories)
        manifest = {
            "input": os.path.abspath(input_path), "input_kind": source.kind,
            "categories": getattr(categories, "path", None),
            "tta": config.views.describe(), "views": config.views.count,
            "combiners": list(combiners), "md5_modes": list(md5_modes),
            "md5_dict": os.path.abspath(md5_dict_path) if md5_dict_path else None,
            "batch_size": config.batch_size, "decoders": config.decoders, "devices": list(config.devices),
            "image_size": list(config.views.size),
            "decode_on": config.decode_on,
            "skip_bad_images": config.skip_bad_images, "skipped_documents": list(source.skipped),
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        aggregator = Aggregator(lambda name: os.path.join(out_dir, name), models, combiners, md5_modes, top_k,
                                manifest, [numbers for _, numbers in model_groups(handles)])
        run = run_pipeline if config.decoders > 0 else run_in_process
        return run(source, handles, aggregator, config, md5_counts)
