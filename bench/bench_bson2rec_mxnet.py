"""The im2rec-style baseline of bench_bson2rec.py, in a process of its own (it imports MXNet):
decode each JPEG with OpenCV, re-encode it at quality 95 and write it with MXNet's
``MXIndexedRecordIO``, one process, over the first MAX_BYTES of the BSON file.

    python bench/bench_bson2rec_mxnet.py TRAIN_BSON OUT_REC MAX_BYTES

Prints ``[seconds, BSON bytes covered]`` as its last line, JSON.
"""
import json
import sys
import time

import bson
import cv2
import mxnet as mx
import numpy as np

from bench_common import ROOT  # noqa: F401  (the checkout on sys.path)
from data.bson_index import BsonIndex
from data.recordio import record_paths


def im2rec_style(path, out_rec, max_bytes):
    """(seconds, BSON bytes covered): decode + re-encode + MXNet writer, one process."""
    index = BsonIndex.load_or_build(path)
    stop = int(np.searchsorted(np.cumsum(index.records["length"]), max_bytes)) + 1
    writer = mx.recordio.MXIndexedRecordIO(record_paths(out_rec)[1], out_rec, "w")
    start, key = time.perf_counter(), 0
    for pos, raw in index.iter_raw(0, stop):
        doc = bson.decode(raw)
        for number, img in enumerate(doc["imgs"]):
            pixels = cv2.imdecode(np.frombuffer(img["picture"], np.uint8), cv2.IMREAD_COLOR)
            _, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
            header = mx.recordio.IRHeader(0, float(doc["category_id"] % 5270), doc["_id"], number)
            writer.write_idx(key, mx.recordio.pack(header, jpeg.tobytes()))
            key += 1
    writer.close()
    return time.perf_counter() - start, int(index.records["length"][:stop].sum())


if __name__ == "__main__":
    print(json.dumps(im2rec_style(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
