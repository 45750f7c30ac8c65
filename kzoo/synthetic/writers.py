"""Synthetic VGG weight files in each real source format.

Each writer produces a file with the real layer layout, key names and array layouts of its
source (legacy Keras HDF5, Caffe V1/V2 protobuf, Lasagne Python 2 pickle, torchvision/timm
safetensors) for a :class:`~kzoo.synthetic.layouts.VGGLayout`, filled with random He-scaled
values, and returns the arrays it wrote in the source's own layout, so an independent
reference can check a conversion.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.synthetic.encoding import Py2Pickler, caffe_layer, field_key, varint_bytes
from kzoo.synthetic.layouts import TINY_VGG19, VGGLayout

__all__ = [
    "write_caffe",
    "write_keras_h5",
    "write_lasagne",
    "write_legacy_h5",
    "write_safetensors",
]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1)
    scale = np.float32(math.sqrt(2.0 / fan_in))
    step = 1 << 24  # chunks keep generation of the 411 MB fc6 fast and lean
    for start in range(0, flat.size, step):
        chunk = flat[start : start + step]
        rng.standard_normal(out=chunk, dtype=np.float32)
        chunk *= scale
    return out


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-0.1, 0.1, n).astype(np.float32)


def _bn(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "weight": rng.uniform(0.5, 1.5, n).astype(np.float32),
        "bias": rng.uniform(-0.2, 0.2, n).astype(np.float32),
        "running_mean": rng.uniform(-0.3, 0.3, n).astype(np.float32),
        "running_var": rng.uniform(0.5, 2.0, n).astype(np.float32),
    }


# ---------------------------------------------------------------------------------------------
# Legacy Keras HDF5


def write_keras_h5(
    path: Path,
    layout: VGGLayout = TINY_VGG19,
    *,
    include_top: bool = True,
    naming: str = "keras2",
    seed: int = 0,
) -> dict[str, list[np.ndarray]]:
    """Write weights like ``vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5``.

    Args:
        path: The file to write.
        layout: The network (no BatchNorm).
        include_top: False writes the ``_notop`` file (convs and pools only).
        naming: ``"keras2"`` (``block1_conv1/kernel:0``) or ``"keras1"`` (``block1_conv1_W_1:0``).
        seed: Random seed.

    Returns:
        The Keras-layout arrays written, keyed by layer name.
    """
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, list[np.ndarray]]] = [("input_1", [])]
    for block, index, c_in, c_out in layout.convs():
        kernel = _normal(rng, (3, 3, c_in, c_out), 9 * c_in)
        layers.append((f"block{block}_conv{index}", [kernel, _bias(rng, c_out)]))
        if index == layout.convs_per_block[block - 1]:
            layers.append((f"block{block}_pool", []))
    if include_top:
        layers.append(("flatten", []))
        for name, n_in, n_out in layout.dense():
            layers.append((name, [_normal(rng, (n_in, n_out), n_in), _bias(rng, n_out)]))
    write_legacy_h5(path, layers, naming=naming)
    return {name: arrays for name, arrays in layers if arrays}


def write_legacy_h5(
    path: Path, layers: list[tuple[str, list[np.ndarray]]], *, naming: str = "keras2"
) -> None:
    """Write layers' arrays in the legacy Keras HDF5 weights layout (``save_weights`` of Keras 2).

    Root attribute ``layer_names`` lists every layer in order (those without weights too);
    each layer's group has attribute ``weight_names`` and one dataset per array in that order.

    Args:
        path: The file to write.
        layers: ``(layer name, arrays)`` in model order; arrays in ``layer.weights`` order.
        naming: ``"keras2"`` (``conv1/kernel:0``, ``gamma:0``...) or ``"keras1"``
            (``conv1_W_1:0``, ``conv1_b_1:0``).
    """
    import h5py

    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [name.encode() for name, _ in layers]
        h5.attrs["backend"] = b"tensorflow"
        h5.attrs["keras_version"] = b"2.2.4" if naming == "keras2" else b"1.2.2"
        for name, arrays in layers:
            group = h5.create_group(name)
            names = [_weight_name(name, len(arrays), i, naming) for i in range(len(arrays))]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for weight_name, array in zip(names, arrays, strict=True):
                group.create_dataset(weight_name, data=array)


def _weight_name(layer: str, count: int, index: int, naming: str) -> str:
    if count in (3, 4) and naming == "keras2":  # BatchNormalization (3: scale=False)
        leaves = ("gamma", "beta", "moving_mean", "moving_variance")[4 - count :]
        return f"{layer}/{leaves[index]}:0"
    if naming == "keras2":
        return f"{layer}/{('kernel', 'bias')[index]}:0"
    return f"{layer}_{('W', 'b', 'mean', 'std')[index]}_1:0"


# ---------------------------------------------------------------------------------------------
# Caffe protobuf


def write_caffe(
    path: Path, layout: VGGLayout = TINY_VGG19, *, version: int = 1, seed: int = 0
) -> list[tuple[str, list[np.ndarray]]]:
    """Write a ``.caffemodel`` like the Oxford ``VGG_ILSVRC_19_layers.caffemodel``.

    Args:
        path: The file to write.
        layout: The network (no BatchNorm).
        version: 1 writes V1 ``layers`` (enum types, 4-D legacy blob dims, as Oxford's file);
            2 writes V2 ``layer`` (string types, ``shape`` dims).
        seed: Random seed.

    Returns:
        ``(layer name, [weight, bias])`` for each layer with weights, in Caffe's layout:
        conv ``(out, in, h, w)``, fc ``(out, in)`` with inputs in ``(C, H, W)`` order.
    """
    rng = np.random.default_rng(seed)
    written: list[tuple[str, list[np.ndarray]]] = []
    with open(path, "wb") as handle:
        name = b"VGG_ILSVRC_19_layers"
        handle.write(field_key(1, 2) + varint_bytes(len(name)) + name)
        caffe_layer(handle, version, "data", "data", [])
        for block, index, c_in, c_out in layout.convs():
            weight = _normal(rng, (c_out, c_in, 3, 3), 9 * c_in)
            bias = _bias(rng, c_out)
            layer = f"conv{block}_{index}"
            caffe_layer(handle, version, layer, "conv", [weight, bias])
            caffe_layer(handle, version, f"relu{block}_{index}", "relu", [])
            written.append((layer, [weight, bias]))
            if index == layout.convs_per_block[block - 1]:
                caffe_layer(handle, version, f"pool{block}", "pool", [])
        for i, (_, n_in, n_out) in enumerate(layout.dense()):
            weight, bias = _normal(rng, (n_out, n_in), n_in), _bias(rng, n_out)
            layer = f"fc{6 + i}"
            caffe_layer(handle, version, layer, "fc", [weight, bias])
            written.append((layer, [weight, bias]))
        caffe_layer(handle, version, "prob", "softmax", [])
    return written


# ---------------------------------------------------------------------------------------------
# Lasagne Recipes pickle (Python 2)


def write_lasagne(path: Path, layout: VGGLayout = TINY_VGG19, *, seed: int = 0) -> dict[str, Any]:
    """Write a pickle like Lasagne Recipes' ``vgg19.pkl`` (Python 2, protocol 2).

    Returns:
        The pickled dict: ``'param values'`` (conv W ``(out, in, h, w)``, dense W ``(in, out)``
        with inputs in ``(C, H, W)`` order, biases), ``'synset words'``, ``'mean value'``,
        ``'model name'``.
    """
    rng = np.random.default_rng(seed)
    params: list[np.ndarray] = []
    for _, _, c_in, c_out in layout.convs():
        params += [_normal(rng, (c_out, c_in, 3, 3), 9 * c_in), _bias(rng, c_out)]
    for _, n_in, n_out in layout.dense():
        params += [_normal(rng, (n_in, n_out), n_in), _bias(rng, n_out)]
    classes = layout.fc[-1]
    data = {
        "param values": params,
        "synset words": [f"n{i:08d} class {i}, synthetic" for i in range(classes)],
        "mean value": np.array([103.939, 116.779, 123.68]),
        "model name": "VGG-19 (synthetic)",
    }
    with open(path, "wb") as handle:
        Py2Pickler(handle, protocol=2).dump(data)
    return data


# ---------------------------------------------------------------------------------------------
# torchvision / timm safetensors


def write_safetensors(
    path: Path, layout: VGGLayout = TINY_VGG19, *, keys: str = "torchvision", seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a ``model.safetensors`` like ``vgg19.tv_in1k`` (``keys="timm"``) or torchvision's.

    Args:
        path: The file to write.
        layout: The network; ``layout.batchnorm`` writes the ``vgg19_bn`` keys.
        keys: ``"torchvision"`` (``classifier.{0,3,6}``) or ``"timm"`` (``pre_logits.fc1`` as a
            conv over the whole pool5 map, ``pre_logits.fc2`` a 1x1 conv, ``head.fc``).
        seed: Random seed.

    Returns:
        The tensors written, keyed as in the file (torch layouts).
    """
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    position = 0
    for block, index, c_in, c_out in layout.convs():
        tensors[f"features.{position}.weight"] = _normal(rng, (c_out, c_in, 3, 3), 9 * c_in)
        tensors[f"features.{position}.bias"] = _bias(rng, c_out)
        position += 1
        if layout.batchnorm:
            for leaf, value in _bn(rng, c_out).items():
                tensors[f"features.{position}.{leaf}"] = value
            tensors[f"features.{position}.num_batches_tracked"] = np.array(1000, dtype=np.int64)
            position += 1
        position += 1  # ReLU
        if index == layout.convs_per_block[block - 1]:
            position += 1  # MaxPool
    dense = list(layout.dense())
    side, channels = layout.pool5_size, layout.widths[-1]
    if keys == "torchvision":
        for module, (_, n_in, n_out) in zip((0, 3, 6), dense, strict=True):
            tensors[f"classifier.{module}.weight"] = _normal(rng, (n_out, n_in), n_in)
            tensors[f"classifier.{module}.bias"] = _bias(rng, n_out)
    elif keys == "timm":
        (_, n_in, fc1), (_, _, fc2), (_, _, classes) = dense
        tensors["pre_logits.fc1.weight"] = _normal(rng, (fc1, channels, side, side), n_in)
        tensors["pre_logits.fc1.bias"] = _bias(rng, fc1)
        tensors["pre_logits.fc2.weight"] = _normal(rng, (fc2, fc1, 1, 1), fc1)
        tensors["pre_logits.fc2.bias"] = _bias(rng, fc2)
        tensors["head.fc.weight"] = _normal(rng, (classes, fc2), fc2)
        tensors["head.fc.bias"] = _bias(rng, classes)
    else:
        raise ValueError(f"keys must be 'torchvision' or 'timm'. Received: keys={keys!r}")
    save_file(tensors, str(path))
    return tensors
