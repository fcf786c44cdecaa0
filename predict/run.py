"""Predict one input file with several models into one prediction folder per model.

The function behind ``python predict/predict.py``: opens the input (predict.sources), the
MD5 dictionary when an MD5 mode needs it, runs the ZeroMQ pipeline (or, with
``decoders=0``, the in-process loop) and writes ``<out>/<model name>/`` (predict.outputs).
"""
import datetime
import os

from predict.aggregate import Aggregator
from predict.decode import Md5Counts
from predict.pipeline import run_in_process, run_pipeline
from predict.sources import open_source


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


def predict_input(input_path, handles, out_dir, config, categories=None, combiners=("mean",),
                  md5_modes=("none",), md5_dict_path=None, top_k=5, skip_bad_products=False):
    """Predict every product of `input_path` with every model; return the manifests."""
    check_names(handles)
    source = open_source(input_path, categories, skip_bad_products, progress=config.progress)
    md5_counts = md5_counts_for(md5_modes, md5_dict_path, categories)
    manifest = {
        "input": os.path.abspath(input_path), "input_kind": source.kind,
        "categories": getattr(categories, "path", None),
        "tta": config.views.describe(), "views": config.views.count, "image_size": config.views.image_size,
        "combiners": list(combiners), "md5_modes": list(md5_modes),
        "md5_dict": os.path.abspath(md5_dict_path) if md5_dict_path else None,
        "batch_size": config.batch_size, "decoders": config.decoders, "devices": list(config.devices),
        "skip_bad_images": config.skip_bad_images,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }

    def make_aggregator(models):
        return Aggregator(lambda name: os.path.join(out_dir, name), models, combiners, md5_modes, top_k, manifest)

    run = run_pipeline if config.decoders > 0 else run_in_process
    return run(source, handles, make_aggregator, config, md5_counts)
