"""Layers by name inside nested models, and models that tap their outputs.

A transfer model nests its base as one layer (``image -> vgg19 -> head``), so
``model.get_layer("block1_conv1")`` fails and ``keras.Model(model.input, layer.output)``
raises "Graph disconnected" for a layer inside the base. Here a layer is named by its *path*,
``"vgg19/block1_conv1"``, or by its bare name when that is unique across the nesting:

* :func:`walk` visits a layer and every layer nested in it; :func:`layer_paths` names them;
* :func:`find_layer` resolves a path or a bare name, with did-you-mean;
* :func:`block_outputs` picks the last layer of each conv block (the one before each pool);
* :func:`tap` builds a Functional model from the same inputs to a dict of those layers'
  outputs, nested ones included, sharing every weight with the original.

Keras is used through the model given; nothing here imports it at import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kzoo.errors import UnknownNameError

__all__ = ["block_outputs", "find_layer", "layer_paths", "tap", "walk"]

_POOLS = ("MaxPooling2D", "AveragePooling2D")


def walk(layer: Any) -> Iterator[Any]:
    """Yield ``layer`` and every layer nested in it, depth first, in model order."""
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from walk(child)


def layer_paths(model: Any) -> dict[str, Any]:
    """Every layer of ``model`` by path (``"vgg19/block1_conv1"``), nested ones included.

    Input layers are left out. A nested model appears under its own name and its layers under
    ``"<its name>/..."``.
    """
    paths: dict[str, Any] = {}

    def visit(container: Any, prefix: str) -> None:
        for layer in getattr(container, "layers", ()):
            if type(layer).__name__ == "InputLayer":
                continue
            path = prefix + layer.name
            paths[path] = layer
            if getattr(layer, "layers", None):
                visit(layer, path + "/")

    visit(model, "")
    return paths


def find_layer(model: Any, name: str) -> tuple[str, Any]:
    """The layer ``name`` names in ``model``: a path, or a bare name unique in the nesting.

    Args:
        model: A Keras model.
        name: ``"block4_conv2"`` or ``"vgg19/block4_conv2"``.

    Returns:
        ``(path, layer)``.

    Raises:
        UnknownNameError: No such layer (with the nearest names), or a bare name that several
            nested models share (the message lists their paths).
    """
    paths = layer_paths(model)
    if name in paths:
        return name, paths[name]
    matches = [path for path in paths if path.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0], paths[matches[0]]
    known = sorted({*paths, *(p.rsplit("/", 1)[-1] for p in paths)})
    if matches:
        raise UnknownNameError(
            f"layer of {getattr(model, 'name', 'the model')!r} (ambiguous)",
            name,
            [],
            hint=f"{name!r} is the name of {len(matches)} layers; write one of their paths: "
            + ", ".join(matches),
        )
    raise UnknownNameError(f"layer of {getattr(model, 'name', 'the model')!r}", name, known)


def block_outputs(model: Any) -> list[str]:
    """Paths of the last layer of each block: the layer that feeds each pooling layer.

    For VGG that is ``block1_conv2``, ``block2_conv2``, ``block3_conv4``, ... (with batch norm,
    the ``_relu`` after each), i.e. the activations at every scale the network pools.
    """
    paths = list(layer_paths(model).items())
    found = []
    for index, (_, layer) in enumerate(paths):
        if type(layer).__name__ in _POOLS and index > 0:
            previous = paths[index - 1][0]
            if previous not in found:
                found.append(previous)
    return found


def tap(model: Any, layers: Sequence[str] | Mapping[str, str], name: str | None = None) -> Any:
    """A Functional model from ``model``'s inputs to the outputs of the named layers.

    Args:
        model: A Functional Keras model; layers may sit inside nested models.
        layers: Layer names or paths (their resolved paths become the output keys), or a
            mapping of output key -> layer name or path.
        name: The new model's name (default ``"<model>_taps"``).

    Returns:
        A ``keras.Model`` returning a dict of output key -> tensor; it shares the layers (and
        weights) of ``model``.

    Raises:
        UnknownNameError: A name that is no layer of ``model``.
        ValueError: An empty list of layers, or a layer that is not in ``model``'s graph.
    """
    import keras

    wanted = dict(layers) if isinstance(layers, Mapping) else None
    if wanted is None:
        wanted = {}
        for layer_name in layers:
            path, _ = find_layer(model, layer_name)
            wanted[path] = path
    if not wanted:
        raise ValueError("tap needs at least one layer name. Received: layers=[]")
    outputs = {}
    for key, layer_name in wanted.items():
        path, _ = find_layer(model, layer_name)
        outputs[key] = _tensor(model, path.split("/"))
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_taps")


def _tensor(model: Any, parts: Sequence[str]) -> Any:
    """The symbolic output of the layer at ``parts`` in ``model``'s own graph."""
    layer = model.get_layer(parts[0])
    node = _node_in(model, layer)
    if len(parts) == 1:
        return node.output_tensors[0] if len(node.output_tensors) == 1 else node.output_tensors
    import keras

    # A layer inside a nested model: tap it in the nested model's graph, then call that tap
    # on the tensor that fed the nested model here, so the result hangs off model.inputs.
    inner = keras.Model(layer.inputs, _tensor(layer, parts[1:]))
    inputs = node.input_tensors
    return inner(inputs[0] if len(inputs) == 1 else inputs)


def _node_in(model: Any, layer: Any) -> Any:
    # Keras keeps no public map from a layer to its call inside a given model; a Functional
    # model lists its nodes as "<id(operation)>_ib-<index>" keys (keras.src.ops.function).
    keys = getattr(model, "_nodes", None)
    nodes = getattr(layer, "_inbound_nodes", [])
    if keys is None:  # not a Functional model: only an unambiguous call can be used
        if len(nodes) == 1:
            return nodes[0]
    else:
        for index, node in enumerate(nodes):
            if f"{id(layer)}_ib-{index}" in keys:
                return node
    raise ValueError(
        f"cannot find where {getattr(model, 'name', 'the model')!r} calls layer "
        f"{layer.name!r}: tapping needs a Functional or Sequential model. "
        f"Received: {type(model).__name__}"
    )
