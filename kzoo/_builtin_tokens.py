"""The built-in tokens of the notation: their syntax, validation and shape rules.

:func:`builtin_tokens` declares ``C``, ``FC``/``N``/``output``, ``F``, ``GAP``/``GMP``, ``BN``,
``D``, ``MP``/``AP`` and the activations for :func:`kzoo.register_token` (which
:mod:`kzoo.tokens` calls on first use, through its re-export in :mod:`kzoo.shapes`). A shape
rule maps an input shape and the layer's parameters to the output shape and parameter count;
a validator rejects impossible numbers while parsing. Pure Python: Keras is imported only
when a model is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kzoo.tokens import ACTIVATIONS, ShapeProblem, TokenProblem

Shape = tuple[int | None, ...]


def _fmt(shape: Shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _spatial(shape: Shape, what: str) -> tuple[int | None, int | None, int | None]:
    if len(shape) != 3:
        raise ShapeProblem(
            f"needs an image input (height x width x channels), got {_fmt(shape)}",
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
            f"reduces {_fmt((h, w))} to {_fmt((oh, ow))}",
            help="use 'same' padding (drop 'v'), a smaller kernel or a larger input",
        )
    if c is None:
        raise ShapeProblem("needs a known number of input channels", help="give input_shape")
    filters = p["filters"]
    return (oh, ow, filters), kh * kw * c * filters + (filters if p["use_bias"] else 0)


def _pool_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    h, w, c = _spatial(shape, "pooling")
    (kh, kw), (sh, sw) = p["pool_size"], p["strides"]
    oh, ow = _window(h, kh, sh, 1, "valid"), _window(w, kw, sw, 1, "valid")
    if (oh is not None and oh < 1) or (ow is not None and ow < 1):
        raise ShapeProblem(
            f"reduces {_fmt((h, w))} to {_fmt((oh, ow))}",
            help="use fewer or smaller pooling layers, 'same' padding, or a larger input",
        )
    return (oh, ow, c), 0


def _global_pool_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    return (_spatial(shape, "global pooling")[2],), 0


def _flatten_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    size = None if None in shape else math.prod(shape)  # type: ignore[arg-type]
    return (size,), 0


def _dense_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    if len(shape) != 1:
        raise ShapeProblem(f"needs a flat input, got {_fmt(shape)}", help="add 'F' before it")
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
    return shape, 4 * shape[-1]  # gamma, beta, moving mean, moving variance


def _same_shape(shape: Shape, p: Mapping[str, Any]) -> tuple[Shape, int]:
    return shape, 0


def _whole(p: Mapping[str, Any], names: Sequence[str], what: str, example: str) -> None:
    for name in names:
        value = p.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise TokenProblem(f"{what} must be a whole number >= 1, got {value}", help=example)


def _check_conv(p: Mapping[str, Any]) -> None:
    _whole(p, ("filters",), "the number of filters", "e.g. '64C3'")
    _whole(p, ("kernel", "kernel_w"), "the kernel size", "e.g. '64C3' or '64C1,7'")
    _whole(p, ("strides", "dilation"), "stride and dilation", "e.g. '64C3s2' or '64C3d2'")
    if (p.get("strides") or 1) > 1 and (p.get("dilation") or 1) > 1:
        raise TokenProblem(
            "a convolution cannot have both stride and dilation above 1 (Keras refuses it)",
            help="keep one of 's' and 'd'",
        )


def _check_units(p: Mapping[str, Any]) -> None:
    _whole(p, ("units",), "the number of units", "e.g. 'FC256'")
    if p.get("head") is not None and p["head"] not in ACTIVATIONS:
        raise TokenProblem(
            f"unknown head activation {p['head']!r}", help=f"one of {', '.join(ACTIVATIONS)}"
        )


def _check_pool(p: Mapping[str, Any]) -> None:
    _whole(p, ("size", "size_w", "strides"), "pool size and stride", "e.g. 'MP2' or 'MP3s2'")


def _check_rate(p: Mapping[str, Any]) -> None:
    rate = p["rate"]
    if not 0 <= rate < 1:
        hint = (
            f"did you mean 'D{rate / 100!r}'?"
            if isinstance(rate, int) and 1 <= rate < 100
            else "e.g. 'D0.5'"
        )
        raise TokenProblem(f"dropout rate {rate} is not in [0, 1)", help=hint)


def _lazy_build(keyword: str):
    # Keras is imported only when a model is built, never by parse or explain
    def build(params: Mapping[str, Any]) -> Any:
        from kzoo.builder import make_builtin_layer

        return make_builtin_layer(keyword, params)

    build.__name__ = f"build_{keyword}"
    return build


def builtin_tokens() -> list[dict[str, Any]]:
    """Declarations of the built-in tokens, passed to :func:`kzoo.register_token` on first use."""
    conv_flags = {"s": ("strides", int), "d": ("dilation", int), "v": ("valid", bool)}
    out: list[dict[str, Any]] = [
        dict(
            keyword="C",
            role="conv",
            count="filters",
            count_required=True,
            args=("kernel", "kernel_w"),
            min_args=1,
            flags=conv_flags,
            kwargs=("init",),
            shape=_conv_shape,
            validate=_check_conv,
            doc="convolution: filters, 'C', kernel size, e.g. '64C3', '64C1,7', '64C3s2'",
        ),
        dict(
            keyword="FC",
            role="dense",
            args=("units",),
            kwargs=("init", "head"),
            shape=_dense_shape,
            validate=_check_units,
            doc="dense layer, e.g. 'FC256'",
        ),
        dict(
            keyword="N",
            role="dense",
            count="units",
            count_required=True,
            alias_of="FC",
            kwargs=("init", "head"),
            shape=_dense_shape,
            validate=_check_units,
            doc="dense layer in the literature's notation, e.g. '150N' (printed 'FC150')",
        ),
        dict(
            keyword="output",
            role="dense",
            args=("units",),
            kwargs=("init", "head"),
            shape=_dense_shape,
            validate=_check_units,
            doc="the classifier head, e.g. 'output10' (softmax)",
        ),
        dict(keyword="F", role="flatten", shape=_flatten_shape, doc="flatten"),
        dict(
            keyword="GAP",
            role="global_pool",
            shape=_global_pool_shape,
            doc="global average pooling",
        ),
        dict(keyword="GMP", role="global_pool", shape=_global_pool_shape, doc="global max pooling"),
        dict(
            keyword="BN",
            role="batchnorm",
            modifier=True,
            shape=_bn_shape,
            doc="batch normalisation, standalone 'BN' or attached '+BN'",
        ),
        dict(
            keyword="D",
            role="dropout",
            args=("rate",),
            modifier=True,
            shape=_same_shape,
            validate=_check_rate,
            doc="dropout, e.g. 'D0.5' or '+D0.5'",
        ),
    ]
    for keyword, doc in (("MP", "max pooling"), ("AP", "average pooling")):
        out.append(
            dict(
                keyword=keyword,
                role="pool",
                args=("size", "size_w"),
                min_args=1,
                flags={"s": ("strides", int)},
                shape=_pool_shape,
                validate=_check_pool,
                doc=f"{doc}, e.g. '{keyword}2' or '{keyword}3s2'",
            )
        )
    for name in ACTIVATIONS:
        out.append(
            dict(
                keyword=name,
                role="activation",
                modifier=True,
                shape=_same_shape,
                doc=f"{name} activation, standalone or attached '+{name}'",
            )
        )
    for declaration in out:
        declaration["build"] = _lazy_build(declaration["keyword"])
    return out
