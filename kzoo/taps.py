"""Layers by name inside nested models, and models that tap their outputs.

A transfer model nests its base as one layer (``image -> vgg19 -> head``), so
``model.get_layer("block1_conv1")`` fails and ``keras.Model(model.input, layer.output)``
raises "Graph disconnected" for a layer inside the base. Here a layer is named by its *path*,
``"vgg19/block1_conv1"``, or by its bare name when that is unique across the nesting:

* :func:`walk` visits a layer and every layer nested in it; :func:`layer_paths` names them;
* :func:`find_layer` resolves a path or a bare name, with did-you-mean;
* :func:`block_outputs` picks the last layer of each conv block (the one feeding each pool);
* :func:`flatten` inlines nested models (their layers called directly, weights shared);
* :func:`bypass` rebuilds a model with one layer skipped (the logits under a final softmax);
* :func:`tap` builds a Functional model from the same inputs to a dict of those layers'
  outputs, nested ones included, sharing every weight with the original.

Keras is used through the model given; nothing here imports it at import time. Tapping runs
the model's graph again with Keras's own graph runner (``Functional._run_through_graph``, a
private method): Keras has no public way to reach a layer inside a nested model's call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kzoo.errors import UnknownNameError

__all__ = ["block_outputs", "bypass", "find_layer", "flatten", "layer_paths", "tap", "walk"]

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
    """Paths of the last layer of each block: the activations at every scale of the network.

    For VGG, the layer that feeds each pooling layer: ``block1_conv2``, ``block2_conv2``,
    ``block3_conv4``, ... (with batch norm, the ``_relu`` after each). For a ResNet (layers
    named as keras.applications names them), the stem's ``conv1_relu`` and each stage's last
    block output: ``conv2_block3_out``, ``conv3_block4_out``, ``conv4_block6_out``,
    ``conv5_block3_out`` for ResNet-50.
    """
    paths = list(layer_paths(model).items())
    stages = _stage_outputs([path for path, _ in paths])
    if stages:
        return stages
    by_id = {id(layer): path for path, layer in paths}
    found = []
    for index, (_, layer) in enumerate(paths):
        if type(layer).__name__ not in _POOLS or index == 0:
            continue
        # the pool's own input, which on a branching graph need not be the layer listed before
        # it; the listed one when the graph does not say (a pool first in a nested model)
        feeder = _feeder(layer, by_id) or paths[index - 1][0]
        if feeder not in found:
            found.append(feeder)
    return found


_STAGE_OUTPUT = re.compile(r"(?:.*/)?conv(\d+)_block\d+_out$")


def _stage_outputs(paths: list[str]) -> list[str]:
    """A ResNet's stem activation and the last block output of each stage, or [] for others."""
    last: dict[str, str] = {}
    for path in paths:
        match = _STAGE_OUTPUT.match(path)
        if match:
            last[match.group(1)] = path  # later blocks of a stage replace earlier ones
    if not last:
        return []
    stem = [p for p in paths if p.rsplit("/", 1)[-1] == "conv1_relu"]
    return stem[:1] + list(last.values())


def _feeder(layer: Any, by_id: dict[int, str]) -> str | None:
    """The path of the layer whose output ``layer`` takes (inside a nested model, its last)."""
    try:
        operation = layer.input._keras_history.operation
    except (AttributeError, ValueError):  # never called, or called on several inputs
        return None
    while (path := by_id.get(id(operation))) is not None:
        outputs = getattr(operation, "outputs", None)
        if not getattr(operation, "layers", None) or not outputs:
            return path
        operation = outputs[0]._keras_history.operation  # a nested model: what makes its output
    return None


def tap(model: Any, layers: Sequence[str] | Mapping[str, str], name: str | None = None) -> Any:
    """A Functional model from ``model``'s inputs to the outputs of the named layers.

    Nested models are inlined first (their layers called directly, see :func:`flatten`), so
    the result has one level of layers, shares every weight with ``model`` and saves and
    reloads as ``.keras``. A layer the graph calls more than once (a shared layer) is read at
    its last call.

    Args:
        model: A Functional or Sequential Keras model; layers may sit inside nested models.
        layers: Layer names or paths (their resolved paths become the output keys), or a
            mapping of output key -> layer name or path.
        name: The new model's name (default ``"<model>_taps"``).

    Returns:
        A ``keras.Model`` returning a dict of output key -> tensor.

    Raises:
        UnknownNameError: A name that is no layer of ``model``.
        ValueError: An empty list of layers, or a model without a layer graph.
    """
    import keras

    if isinstance(layers, Mapping):
        wanted = {key: find_layer(model, layer)[1] for key, layer in layers.items()}
    else:
        wanted = {}
        for layer_name in layers:
            path, layer = find_layer(model, layer_name)
            wanted[path] = layer
    if not wanted:
        raise ValueError("tap needs at least one layer name. Received: layers=[]")
    inputs, _, produced = _inline(model)
    outputs = {}
    for key, layer in wanted.items():
        if id(layer) not in produced:
            raise ValueError(
                f"layer {layer.name!r} is not called in {model.name!r}'s graph, so it has no "
                "output to tap"
            )
        outputs[key] = produced[id(layer)]
    return keras.Model(inputs, outputs, name=name or f"{model.name}_taps")


def flatten(model: Any) -> Any:
    """The same computation as ``model`` with every nested model's layers called directly.

    Layers are shared, not copied. A nested model's own call arguments (a transfer base's
    ``training=False``) are not kept: the layers follow the flat model's training flag, and
    a frozen BatchNormalization runs in inference mode either way.

    Raises:
        ValueError: ``model`` has no layer graph (a subclassed model), or the inlined layers'
            names collide.
    """
    import keras

    inputs, outputs, _ = _inline(model)
    try:
        return keras.Model(inputs, outputs, name=f"{model.name}_flat")
    except ValueError as error:
        raise ValueError(
            f"cannot inline the nested models of {model.name!r}: their layers, called "
            f"directly, {error}. Give the layers unique names."
        ) from error


def _inline(model: Any) -> tuple[Any, Any, dict[int, Any]]:
    """Run ``model``'s graph again on its inputs, nested models inlined.

    Returns ``(inputs, outputs, produced)``, ``produced`` mapping ``id(layer)`` to what the
    layer (or nested model) returned in the new graph.
    """
    graph = _graph(model)
    if graph is None:
        raise ValueError(
            f"tapping layers needs a Functional or Sequential model; {model.name!r} is a "
            f"{type(model).__name__} with no layer graph. Received: {type(model).__name__}"
        )
    produced: dict[int, Any] = {}

    def inline(operation: Any) -> Any:
        # Keras runs a Functional graph through one hook per operation; a nested model's
        # hook runs its own graph the same way, so its layers land in the outer graph.
        def call(*args: Any, **kwargs: Any) -> Any:
            nested = _graph(operation)
            if nested is not None:
                result = nested._run_through_graph(args[0], operation_fn=inline)
            else:
                result = operation(*args, **kwargs)
            produced[id(operation)] = result
            return result

        return call

    outputs = graph._run_through_graph(graph.inputs, operation_fn=inline)
    return _inputs(graph), outputs, produced


def bypass(model: Any, layer: Any) -> Any:
    """``model`` rebuilt on the same layers (same weights) with ``layer`` as the identity.

    The saliency plots use it to read the logits a final ``keras.layers.Softmax`` is given. A
    nested model is run layer by layer only when it holds ``layer`` (a transfer model's head),
    so the others keep their own call arguments.

    Args:
        model: A Functional or Sequential model.
        layer: A one-input layer of ``model``, possibly inside a nested model.

    Returns:
        A ``keras.Model``, or ``model`` itself when it has no layer graph (a subclassed model).
    """
    import keras

    graph = _graph(model)
    if graph is None:
        return model

    def operation_fn(operation: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if operation is layer:
                return args[0]
            nested = _graph(operation)
            if nested is not None and any(inner is layer for inner in walk(operation)):
                return nested._run_through_graph(args[0], operation_fn=operation_fn)
            return operation(*args, **kwargs)

        return call

    outputs = graph._run_through_graph(graph.inputs, operation_fn=operation_fn)
    return keras.Model(_inputs(graph), outputs, name=f"{model.name}_without_{layer.name}")


def _graph(model: Any) -> Any:
    """The Functional graph of a model: itself, or the one a built Sequential keeps inside."""
    if hasattr(model, "_run_through_graph"):
        return model
    inner = getattr(model, "_functional", None)  # keras.Sequential, once built on an Input
    return inner if hasattr(inner, "_run_through_graph") else None


def _inputs(model: Any) -> Any:
    # one input as a tensor, not a list: Keras warns when a call's structure differs
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs
