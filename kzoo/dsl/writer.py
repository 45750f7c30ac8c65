"""Keras models -> canonical architecture strings: the way back from :func:`kzoo.build`.

:func:`to_string` reads a chain of layers and writes one DSL item per kzoo token, then
:func:`reroll` folds repeats into ``xN`` and ``[..]xN``, so ``kzoo.build(to_string(model))``
rebuilds the same layers, names and shapes. It reads layers through their ``get_config()``, so
this module never imports Keras.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kzoo.dsl.ast import format_number
from kzoo.dsl.builtin_tokens import activation_name, int_pair, pair_text
from kzoo.dsl.parser import parse
from kzoo.dsl.tokens import ACTIVATIONS, TokenProblem, get_token, keywords
from kzoo.errors import SpecError

if TYPE_CHECKING:
    import keras

__all__ = ["reroll", "to_string"]


class _Writer:
    """Reads a chain of layers and writes one item string per kzoo token."""

    def __init__(self, model: keras.Model, ignore: Sequence[str]) -> None:
        self.layers = [layer for layer in model.layers if layer.name not in set(ignore)]
        dense = [i for i, layer in enumerate(self.layers) if type(layer).__name__ == "Dense"]
        self.head = dense[-1] if dense else None
        self.i = 0

    def unrepresentable(self, layer: Any, why: str) -> ValueError:
        return ValueError(
            f"Cannot write layer {layer.name!r} ({type(layer).__name__}) as an architecture "
            f"string: {why}. Pass ignore=[{layer.name!r}] to leave it out."
        )

    def peek(self, kind: str) -> Any:
        if self.i < len(self.layers) and type(self.layers[self.i]).__name__ == kind:
            self.i += 1
            return self.layers[self.i - 1]
        return None

    def attached(self, default_act: str, bias: bool, act: str) -> str:
        """The ``+BN+act+D`` suffix for the layers that follow a conv/dense."""
        text = ""
        if not bias and act == "linear" and self.peek("BatchNormalization") is not None:
            text += "+BN"
            follow = self.peek("Activation")
            act = activation_name(follow.get_config()["activation"]) if follow else "linear"
        if act != default_act:
            if act not in ACTIVATIONS:
                raise self.unrepresentable(self.layers[self.i - 1], f"activation {act!r}")
            text += f"+{act}"
        drop = self.peek("Dropout")
        if drop is not None:
            text += f"+D{format_number(float(drop.rate))}"
        return text

    def items(self) -> list[str]:
        out: list[str] = []
        while self.i < len(self.layers):
            index, layer = self.i, self.layers[self.i]
            self.i += 1
            kind = type(layer).__name__
            if kind == "InputLayer":
                continue
            if kind == "Conv2D":
                out.append(self.conv(layer, layer.get_config()))
            elif kind == "Dense":
                cfg = layer.get_config()
                act = activation_name(cfg["activation"])
                default = "softmax" if index == self.head else "relu"
                init = self.init(cfg)
                out.append(
                    f"FC{cfg['units']}" + self.attached(default, cfg["use_bias"], act) + init
                )
            elif kind == "Flatten":
                if self.i >= len(self.layers) or type(self.layers[self.i]).__name__ != "Dense":
                    out.append("F")  # before a Dense, kzoo inserts the flatten itself
            else:
                out.append(self.token_text(layer))
        return out

    def token_text(self, layer: Any) -> str:
        """The text of the first registered token (built-in, then user) that writes ``layer``."""
        for keyword in keywords():
            token = get_token(keyword)
            try:
                text = token.write(layer) if token is not None and token.write else None
            except TokenProblem as problem:
                raise self.unrepresentable(layer, problem.reason) from None
            if text:
                return text
        raise self.unrepresentable(layer, "no kzoo token builds this kind of layer")

    @staticmethod
    def init(cfg: Mapping[str, Any]) -> str:
        init = cfg.get("kernel_initializer")
        name = init.get("class_name") if isinstance(init, dict) else type(init).__name__
        return "{init=gabor}" if name == "GaborInitializer" else ""

    def conv(self, layer: Any, cfg: Mapping[str, Any]) -> str:
        strides, dilation = int_pair(cfg["strides"]), int_pair(cfg["dilation_rate"])
        if strides[0] != strides[1] or dilation[0] != dilation[1]:
            raise self.unrepresentable(layer, "unequal strides or dilation")
        if cfg.get("groups", 1) != 1 or cfg.get("data_format") == "channels_first":
            raise self.unrepresentable(layer, "grouped or channels-first convolution")
        text = f"{cfg['filters']}C" + pair_text(int_pair(cfg["kernel_size"]))
        text += f"s{strides[0]}" if strides[0] != 1 else ""
        text += f"d{dilation[0]}" if dilation[0] != 1 else ""
        text += "v" if cfg["padding"] == "valid" else ""
        act = activation_name(cfg["activation"])
        return text + self.attached("relu", cfg["use_bias"], act) + self.init(cfg)


_REPEATED = re.compile(r"x\d+$")
_POOLS = ("MP", "AP")


def _times(text: str, n: int) -> str:
    bare = f"{text}x{n}"
    if not _REPEATED.search(text):
        try:  # 'relux2' reads as one word and '64C3x2x2' not at all: those need brackets
            if len(parse(bare).layers()) == n * len(parse(text).layers()):
                return bare
        except SpecError:
            pass
    return f"[{text}]x{n}"


def reroll(items: Sequence[str]) -> list[str]:
    """Collapse repeats: ``A-A-A`` -> ``Ax3``, ``A-B-A-B`` -> ``[A-B]x2``.

    Greedy from the left, taking the repeat that covers the most layers; a group never starts
    with a pooling layer, so VGG's blocks read ``[512C3x4-MP2]x2``.

    Args:
        items: One string per layer token.

    Returns:
        The items with repetition written as ``xN``.
    """
    out: list[str] = []
    i = 0
    while i < len(items):
        best_len, best_n = 1, 1
        for size in range(1, (len(items) - i) // 2 + 1):
            if size > 1 and items[i].startswith(_POOLS):
                break  # a pool closes a block: '[512C3x4-MP2]x2', not '[MP2-512C3x4]x2'
            n = 1
            while items[i + n * size : i + (n + 1) * size] == items[i : i + size]:
                n += 1
            if n > 1 and size * n > best_len * best_n:
                best_len, best_n = size, n
        if best_n == 1:
            out.append(items[i])
        else:
            unit = reroll(items[i : i + best_len])
            text = unit[0] if len(unit) == 1 else "[" + "-".join(unit) + "]"
            out.append(_times(text, best_n))
        i += best_len * best_n
    return out


def to_string(model: keras.Model, *, ignore: Sequence[str] = ()) -> str:
    """The canonical architecture string of a model built from a chain of supported layers.

    ``kzoo.build(to_string(model))`` rebuilds the same layers, names and shapes for models that
    kzoo built. The canonical form has an ``HxWxC:`` header, ``FC`` (never ``N``), repeats
    re-rolled into ``xN`` and ``[..]xN``, and only non-default padding (``v``) spelled out.

    Args:
        model: A Keras model whose layers form one chain.
        ignore: Names of layers to leave out (e.g. a preprocessing layer).

    Returns:
        The architecture string.

    Raises:
        ValueError: Naming the first layer that no token can write.
    """
    writer = _Writer(model, ignore)
    body = "-".join(reroll(writer.items()))
    shape = tuple(model.inputs[0].shape[1:])
    header = "x".join(str(d) for d in shape) + ":" if None not in shape else ""
    return header + body
