"""Architecture strings -> Keras models, and Keras models -> canonical architecture strings.

All decisions (names, BN placement, head, padding, shapes) are made in pure Python by
:func:`kzoo.shapes.plan`; this module only turns each planned step into one Keras layer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kzoo.dsl import format_number, parse
from kzoo.errors import SpecError
from kzoo.shapes import plan
from kzoo.tokens import ACTIVATIONS, get_token, keywords

if TYPE_CHECKING:
    import keras

__all__ = ["build", "make_builtin_layer", "to_string"]

logger = logging.getLogger("kzoo")


def build(
    spec: str,
    input_shape: tuple[int | None, ...] | None = None,
    *,
    head: str | None = None,
    padding: str = "same",
    dialect: str | None = None,
    bn: bool = False,
    dropout: float | None = None,
    activation: str = "relu",
    include_top: bool = True,
    pooling: str | None = None,
    preprocessing: keras.layers.Layer | None = None,
    prefix: str = "",
    name: str | None = None,
) -> keras.Model:
    """Build a Keras model from an architecture string.

    Args:
        spec: e.g. ``"20C5-MP2-50C5-MP2-FC256-FC10"``, ``"28x28x1:FC64-FC10"`` or a named
            architecture (``"vgg19"``, see :func:`kzoo.list_architectures`).
        input_shape: Keras order (height, width, channels); needed unless the spec has a header
            or is a named architecture. A header and a different ``input_shape`` is an error.
        head: Activation of the last dense layer when the spec does not say (default softmax).
        padding: Default padding of convolutions, ``"same"`` (default) or ``"valid"``.
        dialect: ``"ciresan"`` reads the literature's meaning: valid convolutions.
        bn: BatchNormalization after every hidden conv/dense, before its activation.
        dropout: Dropout rate after every hidden dense layer.
        activation: Activation of hidden conv/dense layers.
        include_top: False drops the flatten (or global pooling) and every layer after it.
        pooling: With ``include_top=False``: ``"avg"`` or ``"max"`` global pooling at the end.
        preprocessing: A layer applied right after the input.
        prefix: Prepended to every layer name.
        name: Model name (default: the architecture's name, or ``"kzoo"``).

    Returns:
        A functional ``keras.Model`` with keras.applications layer names.

    Raises:
        SpecError: For a malformed spec or a layer that cannot take its input.
        ValueError: For a bad option.
    """
    import keras

    steps = plan(
        spec,
        input_shape,
        head=head,
        padding=padding,
        dialect=dialect,
        bn=bn,
        dropout=dropout,
        activation=activation,
        include_top=include_top,
        pooling=pooling,
        prefix=prefix,
    )
    inputs = keras.Input(shape=steps.input_shape, name=steps.input_name)
    x = preprocessing(inputs) if preprocessing is not None else inputs
    for step in steps.steps:
        try:
            layer = step.token.build(step.params)
        except SpecError:
            raise
        except (ValueError, TypeError, ImportError) as problem:
            raise SpecError(
                f"cannot build {step.label!r} as {step.name!r}: {problem}",
                steps.text,
                step.span or (0, len(steps.text)),
                help="check the layer's options",
            ) from problem
        x = layer(x)
    model = keras.Model(inputs, x, name=name or steps.name or "kzoo")
    logger.info(
        "built %s: %d layers, %d params", model.name, len(model.layers), model.count_params()
    )
    return model


def _initializer(value: Any) -> Any:
    if value is None:
        return "glorot_uniform"
    if value == "gabor":
        from kzoo.layers import GaborInitializer

        return GaborInitializer()
    import keras

    return keras.initializers.get(value)


def make_builtin_layer(keyword: str, params: Mapping[str, Any]) -> keras.layers.Layer:
    """The Keras layer for one planned step of a built-in token.

    Args:
        keyword: The token keyword (``"C"``, ``"FC"``, ``"MP"``, ``"relu"``, ...).
        params: The planned arguments, ``name`` included.
    """
    from keras import layers

    p = dict(params)
    name = p.pop("name")
    if keyword == "C":
        p["kernel_initializer"] = _initializer(p["kernel_initializer"])
        return layers.Conv2D(name=name, **p)
    if keyword in ("FC", "N", "output"):
        p["kernel_initializer"] = _initializer(p["kernel_initializer"])
        return layers.Dense(name=name, **p)
    simple = {
        "MP": layers.MaxPooling2D,
        "AP": layers.AveragePooling2D,
        "GAP": layers.GlobalAveragePooling2D,
        "GMP": layers.GlobalMaxPooling2D,
        "F": layers.Flatten,
        "BN": layers.BatchNormalization,
        "D": layers.Dropout,
    }
    if keyword in simple:
        return simple[keyword](name=name, **p)
    return layers.Activation(p["activation"], name=name)


# -- model -> string ---------------------------------------------------------------------------
def _activation_name(value: Any) -> str:
    name = value if isinstance(value, str) else getattr(value, "__name__", str(value))
    return "linear" if name in (None, "None") else name


def _pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, list | tuple) else (value, value)  # type: ignore[return-value]


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
            act = _activation_name(follow.get_config()["activation"]) if follow else "linear"
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
            cfg = layer.get_config()
            if kind == "InputLayer":
                continue
            if kind == "Conv2D":
                out.append(self.conv(layer, cfg))
            elif kind == "Dense":
                act = _activation_name(cfg["activation"])
                default = "softmax" if index == self.head else "relu"
                init = self.init(cfg)
                out.append(
                    f"FC{cfg['units']}" + self.attached(default, cfg["use_bias"], act) + init
                )
            elif kind in ("MaxPooling2D", "AveragePooling2D"):
                if cfg["padding"] != "valid":
                    raise self.unrepresentable(layer, "kzoo pools use valid padding")
                size, strides = _pair(cfg["pool_size"]), _pair(cfg["strides"] or cfg["pool_size"])
                text = ("MP" if kind[0] == "M" else "AP") + self._numbers(size)
                if strides != size:
                    if strides[0] != strides[1]:
                        raise self.unrepresentable(layer, "unequal strides")
                    text += f"s{strides[0]}"
                out.append(text)
            elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
                if cfg.get("keepdims"):
                    raise self.unrepresentable(layer, "keepdims=True")
                out.append("GAP" if "Average" in kind else "GMP")
            elif kind == "Flatten":
                if self.i >= len(self.layers) or type(self.layers[self.i]).__name__ != "Dense":
                    out.append("F")  # before a Dense, kzoo inserts the flatten itself
            elif kind == "BatchNormalization":
                out.append("BN")
            elif kind == "Dropout":
                out.append(f"D{format_number(float(cfg['rate']))}")
            elif kind == "Activation":
                act = _activation_name(cfg["activation"])
                if act not in ACTIVATIONS:
                    raise self.unrepresentable(layer, f"activation {act!r}")
                out.append(act)
            else:
                out.append(self.user_token(layer))
        return out

    def user_token(self, layer: Any) -> str:
        for keyword in keywords():
            token = get_token(keyword)
            text = token.write(layer) if token is not None and token.write else None
            if text:
                return text
        raise self.unrepresentable(layer, "no kzoo token builds this kind of layer")

    @staticmethod
    def _numbers(pair: tuple[int, int]) -> str:
        return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]},{pair[1]}"

    @staticmethod
    def init(cfg: Mapping[str, Any]) -> str:
        init = cfg.get("kernel_initializer")
        name = init.get("class_name") if isinstance(init, dict) else type(init).__name__
        return "{init=gabor}" if name == "GaborInitializer" else ""

    def conv(self, layer: Any, cfg: Mapping[str, Any]) -> str:
        strides, dilation = _pair(cfg["strides"]), _pair(cfg["dilation_rate"])
        if strides[0] != strides[1] or dilation[0] != dilation[1]:
            raise self.unrepresentable(layer, "unequal strides or dilation")
        if cfg.get("groups", 1) != 1 or cfg.get("data_format") == "channels_first":
            raise self.unrepresentable(layer, "grouped or channels-first convolution")
        text = f"{cfg['filters']}C" + self._numbers(_pair(cfg["kernel_size"]))
        text += f"s{strides[0]}" if strides[0] != 1 else ""
        text += f"d{dilation[0]}" if dilation[0] != 1 else ""
        text += "v" if cfg["padding"] == "valid" else ""
        act = _activation_name(cfg["activation"])
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
