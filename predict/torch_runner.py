"""The PyTorch model worker: runs and Gluon runs on PyTorch, in the predictor's model workers.

`TorchRunner` is what a model worker runs for the models of the ``torch`` backend
(``models.backends``; predict.runner.open_runner): PyTorch runs (``framework: torch``) and
Gluon runs converted on load (``--backend torch``). Both keep their weights in a Gluon
``.params`` file, loaded into the timm twin of the network (``models.torch_nets.runs``),
which computes the same function.

On a GPU (``gpu:N`` is ``cuda:N``) the networks run in bfloat16 autocast with
channels_last tensors, the layout and precision the Hopper tensor cores are fastest in (a
DPN-92 at 6,387 img/s on one H200 in bf16, against float32's fraction of that; figures in
the README); the softmax is taken in float32. On the CPU they run in float32, where they
give the MXNet worker's probabilities to ~1e-6 (tests/torch/test_torch_predict.py).
``compile``: each network goes through ``torch.compile`` (its first batches compile it).

The uint8 pixels travel to the device and become the network's input there
(`device_input`): a quarter of float32's bytes cross the bus, and the arithmetic of
``data.images.network_input`` runs on the device, for the same float32 values.

With ``--decode-on device`` (`TorchRunner.predict_jpegs`) the JPEG bytes themselves travel:
the batch's pictures are decoded with one ``models.torch_nets.images.decode_on_device`` call
(nvJPEG on a GPU, libjpeg-turbo on the CPU), resized to the decoded size there
(``models.torch_nets.images.resize``: OpenCV's pixels bit for bit), and the test-time views
(`device_views`, those of `predict.decode.Views.of`) and each network's input
(`views_input`) are made there too: no picture crosses the bus but as JPEG bytes. A
picture that the device's decoder refuses is decoded by OpenCV (the decoders' decoder); one
that OpenCV cannot decode either is dropped (``skip_bad_images``: reported, its
product's ``good`` flag cleared before the result leaves) or ends the run with the error
a decoder gives (file, offset, product, image).

This module imports PyTorch: only a model worker imports it (never the parent, never a
process that imported MXNet). A process that has run PyTorch's CPU operators must not fork
model workers: GNU OpenMP is not fork-safe, and such a child blocks forever in its first
parallel operator (seen in the tests, whose pytest process runs PyTorch:
tests/torch/torch_predict_side.py).
"""
import numpy as np
import torch

from data.images import resize_all
from models.torch_nets.devices import share_cpu_threads, torch_device
from models.torch_nets.images import decode_on_device, normalise, resize
from models.torch_nets.runs import load_for_inference
from predict.decode import undecodable
from predict.runner import Runner


def prepared(net, device, compile=False):
    """`net` ready to predict on `device`: evaluation mode, there, channels_last on a GPU,
    through ``torch.compile`` when `compile`."""
    net = net.eval().to(device, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format)
    return torch.compile(net) if compile else net


def device_input(preprocess, pixels, device):
    """``data.images.network_input`` on `device`, as a tensor: ``(n, h, w, 3)``
    uint8 RGB `pixels` resized on the CPU when they are not the network's size, then
    copied as uint8 and, there, put in the channel order, NCHW (channels_last in memory
    on a GPU), float32, ``(x - mean) * scale``."""
    x = torch.from_numpy(np.ascontiguousarray(resize_all(pixels, preprocess.image_shape[1:]))).to(device)
    return normalised(preprocess, x.permute(0, 3, 1, 2), device)


def views_input(preprocess, views, device):
    """The network input of ``(n, 3, h, w)`` uint8 RGB `views` already on `device` (``--decode-on
    device``): `device_input`'s, resized there (``models.torch_nets.images.resize``) when
    they are not the network's size."""
    return normalised(preprocess, resize(views, preprocess.image_shape[1:]), device)


def normalised(preprocess, x, device):
    """``(n, 3, h, w)`` uint8 RGB `x` on `device`, at the network's size, as its input:
    the channel order, then ``models.torch_nets.images.normalise`` (channels_last on a GPU)."""
    if preprocess.channel_order == "BGR":
        x = x.flip(1)
    return normalise(x, preprocess.mean, preprocess.scale, device, channels_last=device.type == "cuda")


def device_views(views, images):
    """The test-time views of `predict.decode.Views` `views` of ``(n, 3, h, w)`` uint8 `images`
    (at ``views.size``) on their device, as `Views.of` makes them on the CPU and in its
    order (the image, the five crops resized back to the image size, then the mirror of
    each): ``(n * views.count, 3, h, w)``, image-major; the same pixels
    (``models.torch_nets.images.resize``)."""
    out = [images]
    if views.crops:
        (h, w), c = images.shape[-2:], views.crop_size
        corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
        out += [resize(images[:, :, y:y + c, x:x + c], (h, w)) for y, x in corners]
    if views.flip:
        out += [v.flip(-1) for v in out]
    return torch.stack(out, dim=1).reshape(-1, *images.shape[1:])


class TorchRunner(Runner):
    """PyTorch networks on one device (device string ``cpu`` or ``gpu:N``), ready to
    predict uint8 RGB views (see the module docstring)."""

    def __init__(self, handles, device):
        self.device = torch_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True      # one input shape per model: tuned once
        self.load_models(handles)

    def load_network(self, meta, compile=False):
        return prepared(load_for_inference(meta), self.device, compile)

    def share_cores(self, processes):
        """On the CPU, PyTorch's threads are this worker's share of the cores
        (``models.torch_nets.devices.share_cpu_threads``): its default, every core in every
        model worker beside the decoders, oversubscribes them."""
        if self.device.type == "cpu":
            share_cpu_threads(processes)

    @torch.inference_mode()
    def probabilities(self, pixels):
        return self._softmaxes(lambda preprocess: device_input(preprocess, pixels, self.device))

    @torch.inference_mode()
    def predict_jpegs(self, batch, views, skip_bad=False):
        """`predict_products` of products carrying JPEG bytes (predict.decode.check_products):
        one `decode_on_device` call for the whole batch, each picture resized to
        ``views.size``, the views and the networks' inputs made on the device. A picture
        that does not decode: with `skip_bad` left out of its product (``good``,
        ``problems``), else the located error (predict.decode.DecodedProduct.drop_image)."""
        images = decode_on_device([j for d in batch for j in d.jpegs], self.device)
        kept, sizes, start = [], [], 0
        for d in batch:
            numbers = [k for k, good in enumerate(d.good) if good]
            n = 0
            for k, jpeg, image in zip(numbers, d.jpegs, images[start:start + len(d.jpegs)]):
                if image is None:
                    d.drop_image(k, undecodable(jpeg), skip_bad)
                else:
                    kept.append(resize(image, views.size))
                    n += 1
            start += len(d.jpegs)
            sizes.append(n * views.count)
            d.jpegs = None                      # decoded: the bytes go no further
        if not kept:
            return self.per_product(batch, sizes, self.no_probabilities(), views.count)
        inputs = device_views(views, torch.stack(kept))
        per_model = self._softmaxes(lambda preprocess: views_input(preprocess, inputs, self.device))
        return self.per_product(batch, sizes, per_model, views.count)

    def _softmaxes(self, make_input):
        """(n_models, n_inputs, classes) float32 softmax, each model's input made once per
        distinct preprocessing by ``make_input(preprocessing)``."""
        inputs, out = {}, []
        for m in self.models:
            if m.preprocessing not in inputs:
                inputs[m.preprocessing] = make_input(m.preprocessing)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = m.net(inputs[m.preprocessing])
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return out


RUNNER = TorchRunner
