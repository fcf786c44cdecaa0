"""The report of a conversion to RecordIO (`NAME.report.json`, see `data.bson2rec`): what it
holds, as types, and how a later run tells from it that an output is up to date.

The report is assembled once, from what each step of the conversion returns (the selection's
counts, the written records, the seal), so no step can leave a field half set, and its JSON
is a plain function of it (`ConversionReport.as_json`): the same inputs give the same bytes.
"""
import dataclasses
import hashlib
import json
import logging
import os

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SelectionCounts:
    """How many products and images the selection of a side took and left out, and why."""
    products_selected: int          # in the side (or file), before anything is left out
    images_selected: int
    filtered: dict                  # images removed by each filter (`duplicate_md5`, ...)
    all_images_filtered: int        # products left without images by the filters
    images_skipped_bad: int         # pictures that will not decode (with --skip-bad)
    products_skipped_bad: int       # bad products, and those left without decodable pictures


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """Everything `NAME.report.json` says (no timings: identical runs give identical files)."""
    fingerprint: str                # digest of `inputs`: the output's identity
    inputs: dict                    # input files' signatures and every option defining the output
    kind: str                       # "train" or "test"
    index_problems: list            # documents the index skipped (`--skip-bad`): of no side
    skipped: list                   # bad products and pictures of this output
    counts: SelectionCounts
    products_written: int
    records: int
    rec_bytes: int
    bson_bytes: int                 # BSON input bytes of the written products
    class_histogram: list           # records per class id; None for a test file
    seal: dict                      # what `up_to_date` checks of the `.rec` and `.idx` (`seal`)

    def as_json(self):
        counts = self.counts
        out = {
            "fingerprint": self.fingerprint, "inputs": self.inputs, "kind": self.kind,
            "index_problems": self.index_problems, "skipped": self.skipped,
            "products": {"selected": counts.products_selected, "all_images_filtered": counts.all_images_filtered,
                         "skipped_bad": counts.products_skipped_bad, "written": self.products_written},
            "images": {"selected": counts.images_selected, "filtered": counts.filtered,
                       "skipped_bad": counts.images_skipped_bad, "written": self.records},
            "records": self.records, "rec_bytes": self.rec_bytes, "bson_bytes": self.bson_bytes, "seal": self.seal,
        }
        if self.class_histogram is not None:
            out["class_histogram"] = self.class_histogram
        return out


def seal(rec_path, idx_path, edge_bytes=1 << 20):
    """What the report records of the `.rec` and `.idx` it belongs to: the `.rec`'s size and
    a digest of its first and last MB (a `.rec` cut short or overwritten by a later writer),
    and a digest of the whole `.idx` (a truncated or overwritten `.idx` silently hides
    records). Cheap: the `.idx` of train.bson's 12 M records is ~250 MB, ~0.3 s of SHA-256;
    a digest of the whole 55 GB `.rec` would be minutes of disk reads on every re-run."""
    size = os.path.getsize(rec_path)
    edges = hashlib.sha256()
    with open(rec_path, "rb") as f:
        edges.update(f.read(edge_bytes))
        f.seek(max(size - edge_bytes, 0))
        edges.update(f.read(edge_bytes))
    idx = hashlib.sha256()
    with open(idx_path, "rb") as f:
        while chunk := f.read(8 << 20):
            idx.update(chunk)
    return {"rec_bytes": size, "rec_edges_sha256": edges.hexdigest(), "idx_sha256": idx.hexdigest()}


def up_to_date(rec_path, idx_path, report_path, fingerprint):
    """The report (JSON) of a finished output made from the same inputs and options, whose
    `.rec` and `.idx` are those it was written with (its `seal`), else None."""
    if not all(os.path.exists(p) for p in (rec_path, idx_path, report_path)):
        return None
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    except ValueError:
        return None
    if not isinstance(report, dict) or report.get("fingerprint") != fingerprint:
        return None
    if report.get("seal") != seal(rec_path, idx_path):
        log.warning("%s or %s is not what %s was written with: converting again", rec_path, idx_path, report_path)
        return None
    return report
