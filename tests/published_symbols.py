"""The published symbolic networks whose checkpoints ``models.weights`` reads, written out
with ``mx.sym`` from their published definitions, independently of ``models``:

- the DPN authors' graph (github.com/cypw/DPNs, ``settings/symbol_basic.py`` and
  ``symbol_dpn.py``): ``BN`` names its BatchNorm ``<name>__bn``, ``BN_AC_Conv`` calls it
  with ``<unit>__bn`` (hence ``<unit>__bn__bn``), ``Conv`` names ``<name>__conv``;
  ``DualPathFactory`` with ``proj``/``down``/``normal`` units, slices, sum and concat;
- MXNet's ``example/image-classification/symbols/resnext.py``, the definition of the
  model-zoo ResNeXt checkpoints (``imagenet1k-resnext-101``): ``bn_data`` (fixed gamma),
  ``conv0``/``bn0``, ``stage{S}_unit{U}_conv{1,2,3}``/``_bn{1,2,3}``, ``_sc``/``_sc_bn``,
  every BatchNorm eps 2e-5, ``pool1``, ``flatten0``, ``fc1``.

One change in both: the final pooling is global (the published kernels are 7x7, which is
global at their 224x224 input), so that small test images give the same features.
"""
import mxnet as mx
import numpy as np

# (k_R, G, k_sec, inc_sec, init channels) as published (REFERENCE.md, "Networks").
AUTHORS_DPN = {
    "dpn92": (96, 32, (3, 4, 20, 3), (16, 32, 24, 128), 64),
    "dpn98": (160, 40, (3, 6, 20, 3), (16, 32, 32, 128), 96),
    "dpn107": (200, 50, (4, 8, 20, 3), (20, 64, 64, 128), 128),
    "dpn131": (160, 40, (4, 8, 28, 3), (16, 32, 32, 128), 128),
}


def _dpn_bn(data, name):
    """The authors' ``BN``: a BatchNorm named ``<name>__bn`` (mx.sym's default eps 1e-3)."""
    return mx.sym.BatchNorm(data, fix_gamma=False, name=name + "__bn")


def _dpn_bn_ac(data, name):
    return mx.sym.Activation(_dpn_bn(data, name), act_type="relu", name=name + "__relu")


def _dpn_bn_ac_conv(data, channels, kernel, name, stride=1, groups=1):
    """The authors' ``BN_AC_Conv``: ``BN(name=name + '__bn')``, then ReLU and ``Conv``."""
    x = mx.sym.Activation(_dpn_bn(data, name + "__bn"), act_type="relu", name=name + "__ac__relu")
    return mx.sym.Convolution(x, num_filter=channels, num_group=groups, kernel=(kernel, kernel),
                              pad=(kernel // 2, kernel // 2), stride=(stride, stride), no_bias=True,
                              name=name + "__conv")


def _dual_path(data, bottleneck, width, inc, groups, name, kind):
    """The authors' ``DualPathFactory(data, R, R, bw, name, inc, G, kind)``."""
    stride = 2 if kind == "down" else 1
    x = mx.sym.Concat(*data, name=name + "_cat-input") if isinstance(data, list) else data
    if kind == "normal":
        residual, dense = data
    else:
        projected = _dpn_bn_ac_conv(x, width + 2 * inc, 1, "%s_c1x1-w(s/%d)" % (name, stride), stride)
        residual = mx.sym.slice_axis(projected, axis=1, begin=0, end=width)
        dense = mx.sym.slice_axis(projected, axis=1, begin=width, end=width + 2 * inc)
    x = _dpn_bn_ac_conv(x, bottleneck, 1, name + "_c1x1-a")
    x = _dpn_bn_ac_conv(x, bottleneck, 3, name + "_c3x3-b", stride, groups)
    x = _dpn_bn_ac_conv(x, width + inc, 1, name + "_c1x1-c")
    return [mx.sym.ElementWiseSum(residual, mx.sym.slice_axis(x, axis=1, begin=0, end=width), name=name + "_sum"),
            mx.sym.Concat(dense, mx.sym.slice_axis(x, axis=1, begin=width, end=width + inc), name=name + "_cat")]


def authors_dpn(k_r, groups, k_sec, inc_sec, init_channels, classes=11):
    """The authors' ``get_symbol`` of a DPN (features: ``flatten_output``)."""
    x = mx.sym.Convolution(mx.sym.var("data"), num_filter=init_channels, kernel=(7, 7), stride=(2, 2), pad=(3, 3),
                           no_bias=True, name="conv1_x_1__conv")
    x = mx.sym.Pooling(_dpn_bn_ac(x, "conv1_x_1__relu-sp"), pool_type="max", kernel=(3, 3), pad=(1, 1),
                       stride=(2, 2), name="pool1")
    for stage, (n_blocks, inc) in enumerate(zip(k_sec, inc_sec)):
        width = 256 * 2 ** stage                      # bw; R = k_R * bw / 256
        for i in range(1, n_blocks + 1):
            kind = "normal" if i > 1 else ("proj" if stage == 0 else "down")
            x = _dual_path(x, k_r * width // 256, width, inc, groups, "conv%d_x__%d" % (stage + 2, i), kind)
    x = _dpn_bn_ac(mx.sym.Concat(*x, name="conv5_x_x_cat-final"), "conv5_x_x__relu-sp")
    x = mx.sym.Flatten(mx.sym.Pooling(x, pool_type="avg", global_pool=True, kernel=(7, 7), name="pool5"),
                       name="flatten")
    return mx.sym.SoftmaxOutput(mx.sym.FullyConnected(x, num_hidden=classes, name="fc6"), name="softmax")


def _resnext_unit(data, num_filter, stride, dim_match, name, num_group, width_factor):
    """``residual_unit`` of MXNet's resnext.py (bottleneck): the stride is on the grouped 3x3."""
    def conv_bn(x, channels, kernel, conv_stride, suffix, groups=1):
        x = mx.sym.Convolution(x, num_filter=channels, num_group=groups, kernel=(kernel, kernel),
                               stride=(conv_stride, conv_stride), pad=(kernel // 2, kernel // 2), no_bias=True,
                               name=name + "_conv" + suffix)
        return mx.sym.BatchNorm(x, fix_gamma=False, eps=2e-5, name=name + "_bn" + suffix)
    width = int(num_filter * width_factor)
    x = mx.sym.Activation(conv_bn(data, width, 1, 1, "1"), act_type="relu", name=name + "_relu1")
    x = mx.sym.Activation(conv_bn(x, width, 3, stride, "2", num_group), act_type="relu", name=name + "_relu2")
    x = conv_bn(x, num_filter, 1, 1, "3")
    if dim_match:
        shortcut = data
    else:
        shortcut = mx.sym.Convolution(data, num_filter=num_filter, kernel=(1, 1), stride=(stride, stride),
                                      no_bias=True, name=name + "_sc")
        shortcut = mx.sym.BatchNorm(shortcut, fix_gamma=False, eps=2e-5, name=name + "_sc_bn")
    return mx.sym.Activation(x + shortcut, act_type="relu", name=name + "_relu")


def mxnet_resnext(units, filter_list, num_group, width_factor=0.5, stem_stride=2, classes=11):
    """``resnext(units, 4, filter_list, classes, num_group, (3, 224, 224))`` of MXNet's
    resnext.py (features: ``flatten0_output``). ``width_factor``: bottleneck width over the
    unit's output width (0.5 in that file); ``stem_stride``: 2 there (4 for tiny variants)."""
    x = mx.sym.BatchNorm(mx.sym.var("data"), fix_gamma=True, eps=2e-5, name="bn_data")
    x = mx.sym.Convolution(x, num_filter=filter_list[0], kernel=(7, 7), stride=(stem_stride, stem_stride),
                           pad=(3, 3), no_bias=True, name="conv0")
    x = mx.sym.Activation(mx.sym.BatchNorm(x, fix_gamma=False, eps=2e-5, name="bn0"), act_type="relu", name="relu0")
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    for i, n_units in enumerate(units):
        for j in range(n_units):
            x = _resnext_unit(x, filter_list[i + 1], 2 if i > 0 and j == 0 else 1, j > 0,
                              "stage%d_unit%d" % (i + 1, j + 1), num_group, width_factor)
    x = mx.sym.Flatten(mx.sym.Pooling(x, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1"),
                       name="flatten0")
    return mx.sym.SoftmaxOutput(mx.sym.FullyConnected(x, num_hidden=classes, name="fc1"), name="softmax")


def random_checkpoint(symbol, prefix, size=64, seed=0):
    """Random weights for every parameter of `symbol`, written with ``mx.model.save_checkpoint``
    as ``prefix-symbol.json`` + ``prefix-0000.params``; returns ``(arg_params, aux_params)``.
    Gammas and variances in [0.5, 1.5], convolutions at He scale, the rest N(0, 0.1)."""
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, size, size))

    def value(name, shape):
        if name.endswith(("_gamma", "_moving_var")):
            return rng.uniform(0.5, 1.5, shape)
        if name.endswith("_weight") and len(shape) == 4:
            return rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        return rng.normal(0, 0.1, shape)

    args = {name: mx.nd.array(value(name, shape)) for name, shape in zip(symbol.list_arguments(), arg_shapes)
            if name not in ("data", "softmax_label")}
    auxs = {name: mx.nd.array(value(name, shape)) for name, shape in zip(symbol.list_auxiliary_states(), aux_shapes)}
    mx.model.save_checkpoint(prefix, 0, symbol, args, auxs)
    return args, auxs


def executor_output(symbol, layer, args, auxs, x):
    """Output ``layer`` of `symbol` for input `x`, computed by a bound symbolic executor."""
    out = symbol.get_internals()[layer]
    executor = out.bind(mx.cpu(), args=dict({n: args[n] for n in out.list_arguments() if n != "data"}, data=x),
                        aux_states={n: auxs[n] for n in out.list_auxiliary_states()}, grad_req="null")
    return executor.forward(is_train=False)[0].asnumpy()
