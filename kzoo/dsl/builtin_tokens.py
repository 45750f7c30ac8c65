"""The built-in tokens of the notation: their syntax, validation, shape rules and Keras class.

Importing this module registers ``C``, ``FC``/``N``/``output``, ``F``, ``GAP``/``GMP``, ``BN``,
``D``, ``MP``/``AP`` and the activations (:mod:`kzoo.dsl` imports it). Each entry of
:data:`BUILTIN_TOKENS` is one token; adding a token is adding an entry. A shape rule maps an
input shape and the layer's parameters to the output shape and parameter count; a validator
rejects impossible numbers while parsing; ``keras_class`` names the ``keras.layers`` class the
builder makes, with the planned parameters as its arguments; ``write`` turns such a layer back
into token text for :func:`kzoo.to_string` (conv and dense layers are written by
:mod:`.writer` itself, which folds their attached BN, activation and dropout). Pure Python:
no Keras.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kzoo.dsl.ast import format_number
from kzoo.dsl.tokens import ACTIVATIONS, ShapeProblem, Token, TokenProblem, register_builtin

Shape = tuple[int | None, ...]


def format_shape(shape: Shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _spatial(shape: Shape, what: str) -> tuple[int | None, int | None, int | None]:
    if len(shape) != 3:
        raise ShapeProblem(
            f"needs an image input (height x width x channels), got {format_shape(shape)}",
            help=f"put {what} before the first FC / flatten, or give an HxWxC input shape",
        )
    return shape  # type: ignore[return-value]


def _window(n: int | None, size: int, stride: int, dilation: int, padding: str) -> int | None:
    if n is None:
        return None
    if padding == "same":
        return -(-n // stride)
    span = dilation * (size - 1) + 1
    return (n - span) // stride + 1  # below 1 when the window does not fit


def _conv_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    h, w, c = _spatial(shape, "convolutions")
    (kh, kw), (sh, sw), (dh, dw) = p["kernel_size"], p["strides"], p["dilation_rate"]
    oh = _window(h, kh, sh, dh, p["padding"])
    ow = _window(w, kw, sw, dw, p["padding"])
    if (oh is not None and oh < 1) or (ow is not None and ow < 1):
        raise ShapeProblem(
            f"reduces {format_shape((h, w))} to {format_shape((oh, ow))}",
            help="use 'same' padding (drop 'v'), a smaller kernel or a larger input",
        )
    if c is None:
        raise ShapeProblem("needs a known number of input channels", help="give input_shape")
    filters = p["filters"]
    return (oh, ow, filters), kh * kw * c * filters + (filters if p["use_bias"] else 0)


def _pool_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    h, w, c = _spatial(shape, "pooling")
    (kh, kw), (sh, sw) = p["pool_size"], p["strides"]
    padding = p.get("padding", "valid")
    oh, ow = _window(h, kh, sh, 1, padding), _window(w, kw, sw, 1, padding)
    if (oh is not None and oh < 1) or (ow is not None and ow < 1):
        raise ShapeProblem(
            f"reduces {format_shape((h, w))} to {format_shape((oh, ow))}",
            help="use fewer or smaller pooling layers, 'same' padding, or a larger input",
        )
    return (oh, ow, c), 0


def _pad_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    h, w, c = _spatial(shape, "zero padding")
    (top, bottom), (left, right) = p["padding"]
    return (None if h is None else h + top + bottom, None if w is None else w + left + right, c), 0


def _global_pool_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    return (_spatial(shape, "global pooling")[2],), 0


def _flatten_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    size = None if None in shape else math.prod(shape)  # type: ignore[arg-type]
    return (size,), 0


def _dense_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    if len(shape) != 1:
        raise ShapeProblem(
            f"needs a flat input, got {format_shape(shape)}", help="add 'F' before it"
        )
    if shape[0] is None:
        raise ShapeProblem(
            "needs a known input size, but the input has unknown dimensions",
            help="give a full input_shape, or use 'GAP' instead of a flatten before the FC",
        )
    units = p["units"]
    return (units,), shape[0] * units + (units if p["use_bias"] else 0)


def _bn_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    if shape[-1] is None:
        raise ShapeProblem("needs a known number of channels", help="give input_shape")
    # gamma (unless scale=False), beta, moving mean, moving variance
    return shape, (4 if p.get("scale", True) else 3) * shape[-1]


def _same_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    return shape, 0


def _whole(p: Mapping[str, Any], names: Sequence[str], what: str, example: str) -> None:
    for name in names:
        value = p.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise TokenProblem(f"{what} must be a whole number >= 1, got {value}", help=example)


def _check_bias(p: Mapping[str, Any]) -> None:
    if p.get("bias") not in (None, True, False):
        raise TokenProblem(
            f"bias must be true or false, got {p['bias']!r}", help="e.g. '64C3+BN{bias=true}'"
        )


def _check_conv(p: Mapping[str, Any]) -> None:
    _check_bias(p)
    _whole(p, ("filters",), "the number of filters", "e.g. '64C3'")
    _whole(p, ("kernel", "kernel_w"), "the kernel size", "e.g. '64C3' or '64C1,7'")
    _whole(p, ("strides", "dilation"), "stride and dilation", "e.g. '64C3s2' or '64C3d2'")
    if (p.get("strides") or 1) > 1 and (p.get("dilation") or 1) > 1:
        raise TokenProblem(
            "a convolution cannot have both stride and dilation above 1 (Keras refuses it)",
            help="keep one of 's' and 'd'",
        )


def _check_units(p: Mapping[str, Any]) -> None:
    _check_bias(p)
    _whole(p, ("units",), "the number of units", "e.g. 'FC256'")
    if p.get("head") is not None and p["head"] not in ACTIVATIONS:
        raise TokenProblem(
            f"unknown head activation {p['head']!r}", help=f"one of {', '.join(ACTIVATIONS)}"
        )


def _check_pool(p: Mapping[str, Any]) -> None:
    _whole(p, ("size", "size_w", "strides"), "pool size and stride", "e.g. 'MP2' or 'MP3s2'")


def _add_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    return shape, 0  # the planner checks that the branches agree


def _concat_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    return shape, 0  # the planner sums the branches' channels


def _check_pad(p: Mapping[str, Any]) -> None:
    for name in ("before", "after"):
        value = p.get(name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise TokenProblem(
                f"zero padding must be a whole number >= 0, got {value}",
                help="e.g. 'P3' (3 on every side) or 'P0,1' (0 before, 1 after)",
            )


def _check_bn(p: Mapping[str, Any]) -> None:
    eps = p.get("eps")
    if eps is not None and (isinstance(eps, bool | str) or not eps > 0):
        raise TokenProblem(f"eps must be a number > 0, got {eps!r}", help="e.g. 'BN{eps=1e-5}'")
    if p.get("scale") not in (None, True, False):
        raise TokenProblem(f"scale must be true or false, got {p['scale']!r}")


def _check_rate(p: Mapping[str, Any]) -> None:
    rate = p["rate"]
    if not 0 <= rate < 1:
        hint = (
            f"did you mean 'D{rate / 100!r}'?"
            if isinstance(rate, int) and 1 <= rate < 100
            else "e.g. 'D0.5'"
        )
        raise TokenProblem(f"dropout rate {rate} is not in [0, 1)", help=hint)


def _config(layer: Any, keras_class: str) -> Mapping[str, Any] | None:
    """The layer's config when it is a ``keras_class`` layer, else None (not this token's)."""
    return layer.get_config() if type(layer).__name__ == keras_class else None


def int_pair(value: Any) -> tuple[int, int]:
    """A Keras size or stride, ``3`` or ``(3, 3)``, as a pair."""
    return tuple(value) if isinstance(value, list | tuple) else (value, value)  # type: ignore[return-value]


def pair_text(pair: tuple[int, int]) -> str:
    """A size pair as the notation writes it: ``3`` when square, else ``1,7``."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]},{pair[1]}"


def activation_name(value: Any) -> str:
    """An activation as the notation names it (``None`` and ``"None"`` are ``linear``)."""
    name = value if isinstance(value, str) else getattr(value, "__name__", str(value))
    return "linear" if name in (None, "None") else name


def _write_pool(keyword: str, keras_class: str):
    def write(layer: Any) -> str | None:
        cfg = _config(layer, keras_class)
        if cfg is None:
            return None
        size, strides = int_pair(cfg["pool_size"]), int_pair(cfg["strides"] or cfg["pool_size"])
        text = keyword + pair_text(size)
        if strides != size:
            if strides[0] != strides[1]:
                raise TokenProblem("unequal strides")
            text += f"s{strides[0]}"
        return text + ("p" if cfg["padding"] == "same" else "")

    return write


def _write_global_pool(keyword: str, keras_class: str):
    def write(layer: Any) -> str | None:
        cfg = _config(layer, keras_class)
        if cfg is not None and cfg.get("keepdims"):
            raise TokenProblem("keepdims=True")
        return None if cfg is None else keyword

    return write


def _write_batchnorm(layer: Any) -> str | None:
    return None if _config(layer, "BatchNormalization") is None else "BN"


def pad_text(padding: Any) -> str | None:
    """``P3`` / ``P0,1`` for a ZeroPadding2D ``padding``, None when rows and columns differ."""
    if isinstance(padding, int):
        return f"P{padding}"
    (top, bottom), (left, right) = (int_pair(p) for p in padding)
    if (top, bottom) != (left, right):
        return None
    return f"P{top}" if top == bottom else f"P{top},{bottom}"


def _write_pad(layer: Any) -> str | None:
    cfg = _config(layer, "ZeroPadding2D")
    if cfg is None:
        return None
    text = pad_text(cfg["padding"])
    if text is None:
        raise TokenProblem("different padding of rows and columns")
    return text


def _write_dropout(layer: Any) -> str | None:
    cfg = _config(layer, "Dropout")
    return None if cfg is None else f"D{format_number(float(cfg['rate']))}"


def _write_activation(name: str):
    def write(layer: Any) -> str | None:
        cfg = _config(layer, "Activation")
        return name if cfg is not None and activation_name(cfg["activation"]) == name else None

    return write


_CONV_FLAGS = {"s": ("strides", int), "d": ("dilation", int), "v": ("valid", bool)}
_DENSE: dict[str, Any] = dict(
    role="dense", keras_class="Dense", kwargs=("init", "head", "bias"), shape=_dense_shape,
    validate=_check_units,
)  # fmt: skip
_POOL: dict[str, Any] = dict(
    role="pool", args=("size", "size_w"), min_args=1,
    flags={"s": ("strides", int), "p": ("same", bool)}, shape=_pool_shape, validate=_check_pool,
)  # fmt: skip

#: One declaration per token, in the arguments of :func:`kzoo.dsl.tokens.register_builtin`.
BUILTIN_TOKENS: tuple[dict[str, Any], ...] = (
    dict(
        keyword="C", keras_class="Conv2D", role="conv", count="filters", count_required=True,
        args=("kernel", "kernel_w"), min_args=1, flags=_CONV_FLAGS, kwargs=("init", "bias"),
        shape=_conv_shape, validate=_check_conv,
        doc="convolution: filters, 'C', kernel size, e.g. '64C3', '64C1,7', '64C3s2'",
    ),
    dict(keyword="FC", args=("units",), doc="dense layer, e.g. 'FC256'", **_DENSE),
    dict(
        keyword="N", count="units", count_required=True, alias_of="FC",
        doc="dense layer in the literature's notation, e.g. '150N' (printed 'FC150')", **_DENSE,
    ),
    dict(
        keyword="output", args=("units",), doc="the classifier head, e.g. 'output10' (softmax)",
        **_DENSE,
    ),
    dict(keyword="F", keras_class="Flatten", role="flatten", shape=_flatten_shape, doc="flatten"),
    dict(
        keyword="GAP", keras_class="GlobalAveragePooling2D", role="global_pool",
        shape=_global_pool_shape, doc="global average pooling",
        write=_write_global_pool("GAP", "GlobalAveragePooling2D"),
    ),
    dict(
        keyword="GMP", keras_class="GlobalMaxPooling2D", role="global_pool",
        shape=_global_pool_shape, doc="global max pooling",
        write=_write_global_pool("GMP", "GlobalMaxPooling2D"),
    ),
    dict(
        keyword="BN", keras_class="BatchNormalization", role="batchnorm", modifier=True,
        shape=_bn_shape, kwargs=("eps", "scale"), validate=_check_bn,
        doc="batch normalisation, standalone 'BN' or attached '+BN'", write=_write_batchnorm,
    ),
    dict(
        keyword="P", keras_class="ZeroPadding2D", role="pad", args=("before", "after"),
        min_args=1, shape=_pad_shape, validate=_check_pad, write=_write_pad,
        doc="zero padding: 'P3' pads 3 on every side, 'P0,1' 0 before and 1 after",
    ),
    dict(
        keyword="D", keras_class="Dropout", role="dropout", args=("rate",), modifier=True,
        shape=_same_shape, validate=_check_rate, doc="dropout, e.g. 'D0.5' or '+D0.5'",
        write=_write_dropout,
    ),
    dict(
        keyword="MP", keras_class="MaxPooling2D", doc="max pooling, e.g. 'MP2' or 'MP3s2'",
        write=_write_pool("MP", "MaxPooling2D"), **_POOL,
    ),
    dict(
        keyword="AP", keras_class="AveragePooling2D",
        doc="average pooling, e.g. 'AP2' or 'AP3s2'",
        write=_write_pool("AP", "AveragePooling2D"), **_POOL,
    ),
    *(
        dict(
            keyword=name, keras_class="Activation", role="activation", modifier=True,
            shape=_same_shape, doc=f"{name} activation, standalone or attached '+{name}'",
            write=_write_activation(name),
        )
        for name in ACTIVATIONS
    ),
)  # fmt: skip

for _declaration in BUILTIN_TOKENS:
    register_builtin(**_declaration)

#: The layers that join branches. Not keywords (``cat[...]`` and ``add[...]`` are groups, read
#: by the parser), so not in the registry; the planner makes their steps.
MERGE_TOKENS: dict[str, Token] = {
    "add": Token("add", None, _add_shape, role="merge", keras_class="Add", doc="sum"),
    "cat": Token(
        "cat", None, _concat_shape, role="merge", keras_class="Concatenate", doc="concatenate"
    ),
}
