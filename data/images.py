"""The one CPU preprocessing of a picture into a network's input, for training and prediction.

A picture becomes a network input in four steps, with a model's preprocessing (its run's
``models.runs.Preprocessing``: ``image_shape`` ``(3, H, W)``, ``channel_order``, ``mean``
and ``scale`` per channel):

1. decode the JPEG to RGB uint8 pixels (`decode_rgb`: OpenCV, BGR converted);
2. resize to ``H x W`` (bilinear, ``cv2.INTER_LINEAR``: `resize`) when the picture is not that size;
3. ``(pixel - mean) * scale`` in float32, per channel, channels in ``channel_order``
   (RGB, as MXNet's iterator feeds the networks);
4. NCHW layout.

MXNet's ``ImageRecordIter`` (training's Gluon input) does the same in C++: for pictures
of the network's size and for smaller ones (bilinear upscaling) its batches equal
`network_input` bit for bit (tests/test_predict_parity.py). It differs for pictures
LARGER than ``H x W``: the iterator takes their centre ``H x W`` crop where this module
resizes. The Kaggle pictures are 180 x 180 and the recipes' networks take 180 x 180,
where both agree. The PyTorch training input decodes with `decode_rgb` and resizes with
`resize` too; on a PyTorch device ``models.torch_nets.images`` gives the same pixels.

Prediction decodes every picture once, to the largest input size of the models of the run
(`decoded_size`; the test-time views are built there, predict.decode), and resizes to a
model's own size only for models of another size: a model of the decoded size, or any
model of a picture already at its size, gets exactly the steps above.
"""
import cv2
import numpy as np

# The Kaggle pictures' size, which every published recipe trains at.
KAGGLE_IMAGE_SHAPE = (3, 180, 180)


def network_input(preprocess, pixels):
    """Float32 NCHW input of a network with `preprocess` (a ``models.runs.Preprocessing``)
    from ``(n, h, w, 3)`` uint8 RGB pixels: steps 2-4 of the module docstring. The
    raw-pixel models of the reference (mean 0, scale 1) skip the arithmetic: the values
    are the same."""
    pixels = resize_all(pixels, preprocess.image_shape[1:])
    if preprocess.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
    if any(preprocess.mean) or preprocess.scale != 1:
        # one scale, or one per channel
        x = (x - np.asarray(preprocess.mean, np.float32).reshape(1, 3, 1, 1)) * \
            np.asarray(preprocess.scale, np.float32).reshape(1, -1, 1, 1)
    return x


def decode_rgb(jpeg):
    """RGB uint8 pixels of JPEG bytes at their own size, or None when they are not a
    decodable image."""
    bgr = decode_bgr(jpeg)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_bgr(jpeg):
    """BGR uint8 pixels of JPEG bytes at their own size, as OpenCV decodes them, or None
    when they are not a decodable image. OpenCV returns None for undecodable bytes but
    raises on an empty buffer (``!buf.empty() in function 'imdecode_'``), which therefore
    never reaches it."""
    if not len(jpeg):
        return None
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def resize(rgb, size):
    """`rgb` at ``size`` (height, width), bilinear; itself when it already is that size."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_all(pixels, size):
    """Every image of ``(n, h, w, 3)`` `pixels` at ``size``; the array itself when it is."""
    if pixels.shape[1:3] == tuple(size):
        return pixels
    return np.stack([resize(p, size) for p in pixels]) if len(pixels) else \
        np.zeros((0, *size, 3), pixels.dtype)


def decoded_size(image_shapes):
    """The size ``(height, width)`` pictures are decoded to for a run of models of input
    `image_shapes` (each ``(3, H, W)``): the largest input, by area."""
    sizes = [tuple(shape[1:]) for shape in image_shapes]
    return max(sizes, key=lambda s: (s[0] * s[1], s))
