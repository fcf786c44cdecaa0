"""The MXNet model worker: Gluon networks of training runs on one MXNet device.

`MXNetRunner` is what a model worker runs for the models of the ``mxnet`` backend
(``models.backends``; predict.runner.open_runner). Each model's input is made by
``data.images.network_input`` with its own preprocessing (size and normalisation, from
its checkpoint), once per distinct preprocessing of the batch. The NHWC uint8 -> NCHW
float32 conversion and the normalisation run in numpy: MXNet's CPU transpose of uint8
arrays and its broadcast arithmetic are several times slower (26 ms and 16 ms for a
32-image batch, against 3 ms). This module imports MXNet: only a model worker imports it.
"""
import mxnet as mx

from data.devices import parse_device
from data.images import network_input
from models.mxnet_nets.runs import load_for_inference
from predict.runner import Runner


def mxnet_context(text):
    """The MXNet context of device string ``text`` (``data.devices.parse_device``)."""
    device = parse_device(text)
    return mx.Context(device.kind, device.index)


class MXNetRunner(Runner):
    """MXNet networks on one device (device string ``cpu`` or ``gpu:N``), ready to predict
    uint8 RGB views."""

    def __init__(self, handles, device):
        self.ctx = mxnet_context(device)
        self.load_models(handles)
        for m in self.models:
            m.net.hybridize(static_alloc=True)

    def load_network(self, meta, compile=False):
        return load_for_inference(meta, self.ctx)

    def probabilities(self, pixels):
        inputs, out = {}, []
        for m in self.models:
            if m.preprocessing not in inputs:
                inputs[m.preprocessing] = network_input(m.preprocessing, pixels)
            out.append(mx.nd.softmax(m.net(mx.nd.array(inputs[m.preprocessing], ctx=self.ctx))).asnumpy())
        return out


RUNNER = MXNetRunner
