"""Wire format of the prediction pipeline: ZeroMQ multipart messages of raw frames.

Nothing is pickled: every message is a small JSON header frame followed by raw byte
frames (JPEG bytes, MD5 digests, numpy array buffers whose dtype and shape the header
gives), checked for consistency when decoded.

- product (reader -> decoder):   header | jpeg 0 | jpeg 1 | ...
- decoded (decoder -> worker):   header | md5 digests (16 bytes each) | pixels uint8
  or, decoding on the device:    header | md5 digests | jpeg of good image 0 | jpeg of good image 1 | ...
  (the header's ``jpegs``: how many JPEG frames, one per good image; ``where``: the
  product's path, offset and record, for the errors of the device decoding)
- result  (worker -> collector): header | md5 digests | probs float32 (models, good images, classes)
  (the header's ``group``: which group of models, predict.runner.model_groups, the probabilities are of)
- control (any child -> parent): one JSON frame (see predict.pipeline)
"""
import json

import numpy as np

from predict.decode import DecodedProduct
from predict.sources import Product

DIGEST = 16


class MessageError(ValueError):
    """A message that does not follow the wire format."""


def _json(frame):
    try:
        return json.loads(bytes(frame))
    except (ValueError, UnicodeDecodeError) as e:
        raise MessageError(f"bad message header: {e}") from None


def _array(frame, dtype, shape):
    data = np.frombuffer(frame, dtype)
    if data.size != int(np.prod(shape)):
        raise MessageError(f"array frame of {data.size} {dtype} values, header says shape {shape}")
    return data.reshape(shape)


def product_frames(product):
    header = {"seq": product.seq, "id": product.product_id, "label": product.label, "path": product.path,
              "offset": product.offset, "record": product.record}
    return [json.dumps(header).encode(), *product.jpegs]


def product_from_frames(frames):
    h = _json(frames[0])
    return Product(h["seq"], h["id"], h["label"], [bytes(f) for f in frames[1:]], h["path"], h["offset"],
                   h["record"])


def _decoded_header(d, **extra):
    counts = None if d.counts is None else \
        [None if c is None else [c[0].tolist(), c[1].tolist()] for c in d.counts]
    return dict(seq=d.seq, id=d.product_id, label=d.label, n_images=d.n_images, good=d.good,
                hash=d.product_hash.hex(), counts=counts, problems=d.problems, **extra)


def _decoded_from_header(h, md5_frame, pixels, jpegs=None):
    md5 = bytes(md5_frame)
    if len(md5) != DIGEST * h["n_images"]:
        raise MessageError(f"product {h['id']}: {len(md5)} bytes of MD5s for {h['n_images']} images")
    counts = None if h["counts"] is None else \
        [None if c is None else (np.asarray(c[0], np.int64), np.asarray(c[1], np.int64)) for c in h["counts"]]
    return DecodedProduct(h["seq"], h["id"], h["label"], h["n_images"], h["good"], pixels,
                          [md5[i:i + DIGEST] for i in range(0, len(md5), DIGEST)], bytes.fromhex(h["hash"]),
                          counts, h["problems"], jpegs, h.get("where"))


def decoded_frames(d):
    if d.jpegs is not None:
        header = _decoded_header(d, jpegs=len(d.jpegs), where=d.where)
        return [json.dumps(header).encode(), b"".join(d.md5s), *d.jpegs]
    header = _decoded_header(d, pixels=list(d.pixels.shape))
    return [json.dumps(header).encode(), b"".join(d.md5s), d.pixels]


def decoded_from_frames(frames):
    """The `DecodedProduct` of a decoded message: with pixels, or (decoding on the device)
    with the JPEG frames, as they are (bytes-like; no copy), in `jpegs`."""
    h = _json(frames[0])
    if "jpegs" not in h:
        if len(frames) != 3:
            raise MessageError(f"product {h.get('id')}: {len(frames)} frames in a decoded message of pixels, not 3")
        return _decoded_from_header(h, frames[1], _array(frames[2], np.uint8, h["pixels"]))
    good = sum(bool(g) for g in h["good"])
    if not h["jpegs"] == len(frames) - 2 == good or len(h["good"]) != h["n_images"]:
        raise MessageError(f"product {h.get('id')}: {len(frames) - 2} JPEG frames, the header says {h['jpegs']} "
                           f"of {good} good images among {len(h['good'])} flags for {h['n_images']} images")
    return _decoded_from_header(h, frames[1], None, list(frames[2:]))


def result_frames(d, probs, group=0):
    probs = np.ascontiguousarray(probs, np.float32)
    header = _decoded_header(d, probs=list(probs.shape), group=group)
    return [json.dumps(header).encode(), b"".join(d.md5s), probs]


def result_from_frames(frames):
    """(DecodedProduct without pixels, probs (n_models of its group, n_good, classes) float32, group)."""
    h = _json(frames[0])
    probs = _array(frames[2], np.float32, h["probs"])
    return _decoded_from_header(h, frames[1], None), probs, h["group"]


def control_frame(**fields):
    return json.dumps(fields).encode()


def control_from_frame(frame):
    return _json(frame)
