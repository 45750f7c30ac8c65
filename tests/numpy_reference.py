"""Independent NumPy forward passes of VGG-style nets, each in its SOURCE's own layout.

Nothing here imports kzoo: the networks run straight from the arrays a synthetic writer put
in the file, the way each framework would run them (NCHW cross-correlation, its own flatten
order and dense layout, torch BatchNorm with its conv bias), in float64. A converted Keras
model must reproduce these outputs; a wrong transpose, flatten order or bias fold cannot.
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
    tensors: dict[str, np.ndarray], convs_per_block: Sequence[int], x_nchw: np.ndarray
) -> np.ndarray:
    """timm VGG: features, ConvMlp (fc1 a valid conv over pool5, fc2 a 1x1 conv), head.fc."""
    x = torch_features(tensors, convs_per_block, x_nchw, batchnorm=False)
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
