"""Independent NumPy forward passes of VGG and ResNet nets, each in its SOURCE's own layout.

Nothing here imports kzoo: the networks run straight from the arrays a synthetic writer put
in the file, the way each framework would run them (NCHW cross-correlation, its own flatten
order and dense layout, torch BatchNorm with its conv bias), in float64. A converted Keras
model must reproduce these outputs; a wrong transpose, flatten order or bias fold cannot.

ResNets run in NCHW in each source's semantics: torchvision/timm v1.5 (stride on the 3x3,
symmetric padding, max pool padded with -inf, BN eps 1e-5), Caffe (stride on the first 1x1,
ceil-mode pool1 without padding, BatchNorm blobs divided by their scale factor, then Scale,
eps 1e-5) and keras.applications v1 (stride on the first 1x1, pool1 after one pixel of zero
padding, BN eps 1.001e-5). Each source's arrays are looked up by that source's own names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

TORCH_BN_EPSILON = 1e-5


def conv_nchw(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pad: int) -> np.ndarray:
    """Cross-correlation of ``x (N, C, H, W)`` with ``weight (O, C, kh, kw)``, stride 1."""
    kh, kw = weight.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))  # (N, C, H', W', kh, kw)
    return (
        np.einsum("nchwij,ocij->nohw", windows, weight, optimize=True) + bias[None, :, None, None]
    )


def conv_nhwc(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, pad: int) -> np.ndarray:
    """Cross-correlation of ``x (N, H, W, C)`` with a Keras ``kernel (kh, kw, C, O)``."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel, optimize=True) + bias


def max_pool_nchw(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def max_pool_nhwc(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _f64(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def _chw_blocks(
    x: np.ndarray, convs_per_block: Sequence[int], conv_layers: Sequence[Sequence[np.ndarray]]
) -> np.ndarray:
    """Run the conv blocks in NCHW: conv(pad 1) + ReLU, a 2x2 max pool closing each block."""
    layers = iter(conv_layers)
    for count in convs_per_block:
        for _ in range(count):
            weight, bias = next(layers)
            x = relu(conv_nchw(x, _f64(weight), _f64(bias), pad=1))
        x = max_pool_nchw(x)
    return x


def caffe_forward(
    blobs: Sequence[tuple[str, Sequence[np.ndarray]]],
    convs_per_block: Sequence[int],
    x_nchw: np.ndarray,
) -> np.ndarray:
    """Caffe: conv ``(O, C, kh, kw)``; InnerProduct ``y = x W^T + b`` on the (C, H, W) flatten."""
    convs = [b for _, b in blobs if np.ndim(b[0]) == 4]
    dense = [b for _, b in blobs if np.ndim(b[0]) == 2]
    x = _chw_blocks(_f64(x_nchw), convs_per_block, convs)
    x = x.reshape(x.shape[0], -1)
    for i, (weight, bias) in enumerate(dense):
        x = x @ _f64(weight).T + _f64(bias)
        x = relu(x) if i < len(dense) - 1 else x
    return x


def lasagne_forward(
    params: Sequence[np.ndarray], convs_per_block: Sequence[int], x_nchw: np.ndarray
) -> np.ndarray:
    """Lasagne: conv ``(O, C, kh, kw)`` (flip_filters=False); DenseLayer ``y = x W + b``."""
    pairs = [(params[i], params[i + 1]) for i in range(0, len(params), 2)]
    convs = [p for p in pairs if p[0].ndim == 4]
    dense = [p for p in pairs if p[0].ndim == 2]
    x = _chw_blocks(_f64(x_nchw), convs_per_block, convs)
    x = x.reshape(x.shape[0], -1)  # lasagne's DenseLayer flattens (C, H, W)
    for i, (weight, bias) in enumerate(dense):
        x = x @ _f64(weight) + _f64(bias)
        x = relu(x) if i < len(dense) - 1 else x
    return x


def torch_features(
    tensors: dict[str, np.ndarray],
    convs_per_block: Sequence[int],
    x_nchw: np.ndarray,
    batchnorm: bool,
) -> np.ndarray:
    """torchvision ``make_layers``: Conv2d, [BatchNorm2d], ReLU per conv; MaxPool per block."""
    x = _f64(x_nchw)
    index = 0
    for count in convs_per_block:
        for _ in range(count):
            weight, bias = (tensors[f"features.{index}.{k}"] for k in ("weight", "bias"))
            x = conv_nchw(x, _f64(weight), _f64(bias), pad=1)
            index += 1
            if batchnorm:
                gamma, beta, mean, var = (
                    _f64(tensors[f"features.{index}.{k}"])
                    for k in ("weight", "bias", "running_mean", "running_var")
                )
                shape = (1, -1, 1, 1)
                x = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + TORCH_BN_EPSILON)
                x = x * gamma.reshape(shape) + beta.reshape(shape)
                index += 1
            x = relu(x)
            index += 1
        x = max_pool_nchw(x)
        index += 1
    return x


def torchvision_forward(
    tensors: dict[str, np.ndarray],
    convs_per_block: Sequence[int],
    x_nchw: np.ndarray,
    batchnorm: bool = False,
) -> np.ndarray:
    """torchvision VGG: features, flatten (C, H, W), classifier.{0,3,6} ``y = x W^T + b``.

    The input is sized so that pool5 already has the size the classifier expects, so
    torchvision's AdaptiveAvgPool2d is the identity and is left out.
    """
    x = torch_features(tensors, convs_per_block, x_nchw, batchnorm)
    x = x.reshape(x.shape[0], -1)
    for module in (0, 3, 6):
        weight, bias = (_f64(tensors[f"classifier.{module}.{k}"]) for k in ("weight", "bias"))
        x = x @ weight.T + bias
        x = relu(x) if module < 6 else x
    return x


def timm_forward(
    tensors: dict[str, np.ndarray],
    convs_per_block: Sequence[int],
    x_nchw: np.ndarray,
    batchnorm: bool = False,
) -> np.ndarray:
    """timm VGG: features, ConvMlp (fc1 a valid conv over pool5, fc2 a 1x1 conv), head.fc."""
    x = torch_features(tensors, convs_per_block, x_nchw, batchnorm)
    for name in ("pre_logits.fc1", "pre_logits.fc2"):
        weight, bias = (_f64(tensors[f"{name}.{k}"]) for k in ("weight", "bias"))
        x = relu(conv_nchw(x, weight, bias, pad=0))
    x = x.mean(axis=(2, 3))  # the head's global average pool over a 1x1 map
    return x @ _f64(tensors["head.fc.weight"]).T + _f64(tensors["head.fc.bias"])


def keras_forward(
    arrays: dict[str, Sequence[np.ndarray]], convs_per_block: Sequence[int], x_nhwc: np.ndarray
) -> np.ndarray:
    """Keras channels_last: kernels ``(kh, kw, C, O)``, flatten (H, W, C), ``y = x K + b``."""
    x = _f64(x_nhwc)
    for block, count in enumerate(convs_per_block, 1):
        for index in range(1, count + 1):
            kernel, bias = arrays[f"block{block}_conv{index}"]
            x = relu(conv_nhwc(x, _f64(kernel), _f64(bias), pad=1))
        x = max_pool_nhwc(x)
    if "fc1" not in arrays:
        return x
    x = x.reshape(x.shape[0], -1)
    for name in ("fc1", "fc2", "predictions"):
        kernel, bias = arrays[name]
        x = x @ _f64(kernel) + _f64(bias)
        x = relu(x) if name != "predictions" else x
    return x


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """``max |got - expected| / max |expected|``."""
    expected = _f64(expected)
    return float(np.max(np.abs(_f64(got) - expected)) / np.max(np.abs(expected)))


# --- ResNets ---------------------------------------------------------------------------------

KERAS_RESNET_BN_EPSILON = 1.001e-5


def conv2d_nchw(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Cross-correlation in NCHW with ``pad = (before, after)`` zeros on both spatial axes."""
    kh, kw = weight.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), pad, pad))
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.einsum("nchwij,ocij->nohw", windows, _f64(weight), optimize=True)
    return out if bias is None else out + _f64(bias)[None, :, None, None]


def max_pool_3x3_s2(x: np.ndarray, pad: int, ceil_mode: bool) -> np.ndarray:
    """A 3x3 stride-2 max pool padded with -inf (torch), or Caffe's ceil-mode output size."""
    size = x.shape[2] + 2 * pad
    out = -(-(size - 3) // 2) + 1 if ceil_mode else (size - 3) // 2 + 1
    extra = (out - 1) * 2 + 3 - size  # windows that overhang the end (ceil mode)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad + extra), (pad, pad + extra)), "constant",
                    constant_values=-np.inf)  # fmt: skip
    windows = sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    return windows.max(axis=(4, 5))


def batchnorm_nchw(x: np.ndarray, gamma, beta, mean, var, eps: float) -> np.ndarray:
    shape = (1, -1, 1, 1)
    x = (x - _f64(mean).reshape(shape)) / np.sqrt(_f64(var).reshape(shape) + eps)
    return x * _f64(gamma).reshape(shape) + _f64(beta).reshape(shape)


def _resnet_nchw(
    x: np.ndarray,
    conv,
    norm,
    blocks: Sequence[int],
    bottleneck: bool,
    stride_on_3x3: bool,
    ceil_pool: bool,
) -> np.ndarray:
    """The ResNet graph. ``conv(stage, block, part, x, stride, pad)`` and ``norm(stage, block,
    part, x)`` apply a source's layer, or ``conv`` returns None where it has no such layer
    (no projection); stage 1 is the stem; returns the globally pooled features."""
    x = relu(norm(1, 1, 1, conv(1, 1, 1, x, 2, (3, 3))))
    x = max_pool_3x3_s2(x, pad=0 if ceil_pool else 1, ceil_mode=ceil_pool)
    for stage, count in enumerate(blocks, 2):
        for block in range(1, count + 1):
            stride = 2 if stage > 2 and block == 1 else 1
            if bottleneck:
                first = 1 if stride_on_3x3 else stride
                out = relu(norm(stage, block, 1, conv(stage, block, 1, x, first, (0, 0))))
                middle = stride if stride_on_3x3 else 1
                out = relu(norm(stage, block, 2, conv(stage, block, 2, out, middle, (1, 1))))
                out = norm(stage, block, 3, conv(stage, block, 3, out, 1, (0, 0)))
            else:
                out = relu(norm(stage, block, 1, conv(stage, block, 1, x, stride, (1, 1))))
                out = norm(stage, block, 2, conv(stage, block, 2, out, 1, (1, 1)))
            shortcut = conv(stage, block, 0, x, stride, (0, 0))
            x = relu(out + (x if shortcut is None else norm(stage, block, 0, shortcut)))
    return x.mean(axis=(2, 3))


def torch_resnet_forward(
    tensors: dict[str, np.ndarray], blocks: Sequence[int], bottleneck: bool, x_nchw: np.ndarray
) -> np.ndarray:
    """torchvision/timm ResNet (v1.5) from its state dict: logits ``fc(avgpool(features))``
    (the pooled features when the dict has no ``fc``)."""

    def module(stage: int, block: int, part: int, kind: str) -> str:
        if stage == 1:
            return "conv1" if kind == "conv" else "bn1"
        prefix = f"layer{stage - 1}.{block - 1}"
        if part == 0:
            return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
        return f"{prefix}.{kind}{part}"

    def conv(stage, block, part, x, stride, pad):
        key = module(stage, block, part, "conv") + ".weight"
        return None if key not in tensors else conv2d_nchw(x, tensors[key], None, stride, pad)

    def norm(stage, block, part, x):
        name = module(stage, block, part, "bn")
        leaves = ("weight", "bias", "running_mean", "running_var")
        return batchnorm_nchw(x, *(tensors[f"{name}.{k}"] for k in leaves), TORCH_BN_EPSILON)

    x = _resnet_nchw(_f64(x_nchw), conv, norm, blocks, bottleneck, True, False)
    if "fc.weight" not in tensors:  # the pooled features
        return x
    return x @ _f64(tensors["fc.weight"]).T + _f64(tensors["fc.bias"])


def caffe_resnet_forward(
    blobs: dict[str, Sequence[np.ndarray]],
    blocks: Sequence[int],
    x_nchw: np.ndarray,
    numbered_stages: Sequence[int] = (),
) -> np.ndarray:
    """Kaiming He's Caffe ResNet from its blobs by layer name: logits of ``fc1000`` (the
    pooled features when there are no ``fc1000`` blobs)."""
    branches = {0: "branch1", 1: "branch2a", 2: "branch2b", 3: "branch2c"}

    def suffix(stage: int, block: int, part: int) -> str:
        if stage == 1:
            return "_conv1"
        letter = "abcdefghijklmnopqrstuvwxyz"[block - 1]
        name = (
            f"{stage}b{block - 1}" if block > 1 and stage in numbered_stages else f"{stage}{letter}"
        )
        return f"{name}_{branches[part]}"

    def conv(stage, block, part, x, stride, pad):
        name = "conv1" if stage == 1 else "res" + suffix(stage, block, part)
        if name not in blobs:
            return None
        layer = blobs[name]
        return conv2d_nchw(x, layer[0], layer[1] if len(layer) > 1 else None, stride, pad)

    def norm(stage, block, part, x):
        mean, var, factor = (_f64(b) for b in blobs["bn" + suffix(stage, block, part)])
        scale = 0.0 if factor[0] == 0 else 1.0 / factor[0]
        gamma, beta = blobs["scale" + suffix(stage, block, part)]
        return batchnorm_nchw(x, gamma, beta, mean * scale, var * scale, TORCH_BN_EPSILON)

    x = _resnet_nchw(_f64(x_nchw), conv, norm, blocks, True, False, True)
    if "fc1000" not in blobs:  # the pooled features
        return x
    weight, bias = blobs["fc1000"]
    return x @ _f64(weight).T + _f64(bias)


def keras_resnet_forward(
    arrays: dict[str, Sequence[np.ndarray]], blocks: Sequence[int], x_nhwc: np.ndarray
) -> np.ndarray:
    """keras.applications ResNet v1 from its arrays by Keras layer name (channels_last input)."""

    def name(stage: int, block: int, part: int) -> str:
        return "conv1" if stage == 1 else f"conv{stage}_block{block}_{part}"

    def conv(stage, block, part, x, stride, pad):
        layer = arrays.get(name(stage, block, part) + "_conv")
        if layer is None:
            return None
        weight = _f64(layer[0]).transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        return conv2d_nchw(x, weight, layer[1], stride, pad)

    def norm(stage, block, part, x):
        layer = arrays[name(stage, block, part) + "_bn"]
        return batchnorm_nchw(x, *layer, KERAS_RESNET_BN_EPSILON)

    x = _resnet_nchw(_f64(x_nhwc).transpose(0, 3, 1, 2), conv, norm, blocks, True, False, False)
    if "predictions" not in arrays:
        return x
    kernel, bias = arrays["predictions"]
    return x @ _f64(kernel) + _f64(bias)
