"""Pictures decoded and resized on a PyTorch device: batched nvJPEG on a CUDA GPU.

The option ``--decode-on device`` of training (train.torch_backend.loader) and prediction
(predict.torch_runner) decodes the JPEG bytes of a whole batch with one call of
``torchvision.io.decode_jpeg(..., device=...)``: on a CUDA GPU that is nvJPEG's batched
decoder (25,000-33,000 Cdiscount pictures a second on one H200, against OpenCV's
4,700-6,300 a core: issue 13's figures, measured outside this project), which frees the
CPU cores for the rest of the input; on the CPU it is libjpeg-turbo, one picture after
the other, which gives OpenCV's pixels bit for bit (tests/torch/test_torch_data.py) and
lets the tests run this path without a GPU. A picture the device's decoder refuses is
decoded by OpenCV (`decode_on_device`): a picture is good where OpenCV decodes it, in
every decode place (and in MXNet's ImageRecordIter, which decodes with OpenCV).

`resize` is OpenCV's ``INTER_LINEAR`` with OpenCV's own fixed-point arithmetic, on the
device: ``cv2.resize``'s pixels bit for bit (float32 bilinear was within one level but
biased, and moved the probabilities of the predictor's test-time crops by 2.4e-3).

`normalise` makes a network's float32 input of uint8 pixels on the device, for training
(train.torch_backend) and prediction (predict.torch_runner) alike: the computation of
``data.images.network_input``, on the device.

torchvision 0.29 (this project's pin) warns that its decoders are deprecated in favour of
TorchCodec's; they still work, and the GPU machines' torchvision 0.26 does not warn:
`_decode` keeps the warning out of the logs until a release removes them.

Importing this module imports PyTorch and torchvision: never in an MXNet process.
"""
import functools
import warnings

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from data.images import decode_rgb


def jpeg_tensor(jpeg):
    """The 1-D uint8 CPU tensor ``decode_jpeg`` reads, of JPEG bytes (copied: bytes are
    read-only) or such a tensor itself."""
    return jpeg if isinstance(jpeg, torch.Tensor) else torch.from_numpy(np.frombuffer(jpeg, np.uint8).copy())


def _decode(data, device):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision",
                                DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def _decoded_alone(data, device):
    """`data` decoded on `device`, or by OpenCV on the CPU when the device's decoder refuses
    it (`decode_on_device`); None when neither decodes it."""
    try:
        return _decode(data, device)
    except RuntimeError:
        rgb = decode_rgb(data.numpy())
        return None if rgb is None else torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(device)


def decode_on_device(jpegs, device):
    """``[(3, h, w) uint8 RGB tensor on device, or None]``: each of the JPEG byte strings
    (or 1-D uint8 CPU tensors of them) `jpegs` decoded on `device`. One batched call for all
    of them; when that call fails (one bad picture fails the batch), each is decoded alone
    to tell which, and one the device's decoder refuses is decoded by OpenCV on the CPU
    (`data.images.decode_rgb`, what the decoder processes and the input workers use): None
    only for a picture OpenCV cannot decode either. So both decode places of training and of
    prediction take and refuse the same pictures: libjpeg-turbo (torchvision) refuses some
    damaged pictures that OpenCV decodes with a warning (a marker inside the scan data: "Bogus
    Huffman table definition"), and nvJPEG may refuse others."""
    if not jpegs:
        return []
    data = [jpeg_tensor(j) for j in jpegs]
    if all(len(d) for d in data):
        try:
            return list(_decode(data, device))
        except RuntimeError:
            pass
    return [_decoded_alone(d, device) if len(d) else None for d in data]


@functools.lru_cache(maxsize=64)
def _opencv_taps(src, dst, clamp):
    """OpenCV's ``INTER_LINEAR`` taps of one axis (``resize.cpp``, ``resizeGeneric``): the
    two source indices and the 11-bit fixed-point weights of each output index. OpenCV
    clamps the horizontal taps at the borders (weight 1 on the edge pixel) but not the
    vertical ones (their weights stay, on rows clipped to the image)."""
    scale = 1.0 / (dst / src)                        # as OpenCV: 1 / inv_scale, in double
    f = ((torch.arange(dst, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    s = torch.floor(f)
    f = f - s
    s = s.to(torch.int64)
    if clamp:
        outside = (s < 0) | (s >= src - 1)
        f = torch.where(outside, torch.zeros_like(f), f)
    a0 = torch.round((1 - f) * _COEF_SCALE).to(torch.int32)   # saturate_cast<short>: round half to even
    a1 = torch.round(f * _COEF_SCALE).to(torch.int32)
    return s.clamp(0, src - 1), (s + 1).clamp(0, src - 1), a0, a1


_COEF_SCALE = 2048        # OpenCV's INTER_RESIZE_COEF_SCALE (11 bits)


def resize(image, size):
    """uint8 `image` at ``size`` (height, width), bilinear with OpenCV's fixed-point
    arithmetic: the pixels of ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` bit for bit (its
    SIMD vertical pass: ``((a >> 4) * b0 >> 16) + ((c >> 4) * b1 >> 16) + 2 >> 2``; checked
    against OpenCV 4 on x86 for up- and downscales). Integer gathers on the device; uint8
    ``(3, h, w)`` or ``(n, 3, h, w)``, itself when it already is ``size``."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    (h, w), (height, width), device = image.shape[-2:], size, image.device
    x0, x1, a0, a1 = (t.to(device) for t in _opencv_taps(w, width, True))
    y0, y1, b0, b1 = (t.to(device) for t in _opencv_taps(h, height, False))
    pixels = image.to(torch.int32)
    rows = pixels[..., x0] * a0 + pixels[..., x1] * a1                  # (.., h, width), weights x 2048
    top, bottom = rows[..., y0, :] >> 4, rows[..., y1, :] >> 4
    out = ((top * b0[:, None]) >> 16) + ((bottom * b1[:, None]) >> 16)
    return ((out + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def normalise(pixels, mean, scale, device, channels_last=False):
    """Float32 network input ``(pixel - mean) * scale`` of uint8 NCHW `pixels`, on `device`
    (copied without blocking from pinned memory when they are not there yet), in memory
    channels_last or contiguous NCHW (the conversion to float32 lays it out: one pass);
    `scale` is one number or one per channel (timm's networks)."""
    x = pixels.to(device, non_blocking=True)
    x = x.to(torch.float32, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if any(mean):
        x = x - torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    if isinstance(scale, tuple):
        return x * torch.tensor(scale, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return x * scale if scale != 1 else x
