"""From a parsed spec to a list of named layers with shapes and parameter counts, in pure Python.

The planner here decides everything about a built model except creating Keras objects: layer
names (the keras.applications scheme), the implicit Flatten, the head and its activation, where
BatchNormalization, activations and dropout go, the padding. :func:`kzoo.build` turns the plan
into Keras layers one to one, and :func:`explain` prints it, so the two cannot disagree.
The built-in tokens (their syntax and shape rules) are declared here too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kzoo import tokens as _tokens
from kzoo.dsl import Layer, Spec, parse, unparse_layer
from kzoo.errors import SpecError
from kzoo.tokens import ACTIVATIONS, ShapeProblem, TokenProblem

__all__ = ["Explanation", "Plan", "Row", "Step", "builtin_tokens", "explain", "plan"]

Shape = tuple[int | None, ...]


# -- built-in tokens ---------------------------------------------------------------------------
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


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class Step:
    """One Keras layer to create.

    Attributes:
        name: The layer name (prefix included).
        token: The registered token that builds it.
        params: Its arguments (the Keras constructor's for built-ins; the declared names for
            user tokens), ``name`` included.
        label: What explain shows in its token column.
        span: Columns of the spec text this layer comes from, or None.
        output_shape: Output shape without the batch axis.
        n_params: Number of parameters (trainable and not), like Keras ``count_params()``.
    """

    name: str
    token: _tokens.Token
    params: dict[str, Any]
    label: str
    span: tuple[int, int] | None = None
    output_shape: Shape = ()
    n_params: int = 0


@dataclass
class Plan:
    """Everything :func:`kzoo.build` needs: input shape, input name, layers in order."""

    text: str
    input_shape: Shape
    input_name: str
    steps: list[Step] = field(default_factory=list)
    name: str | None = None


@dataclass(frozen=True)
class Row:
    """One line of :class:`Explanation`."""

    name: str
    token: str
    output_shape: Shape
    params: int


@dataclass
class Explanation:
    """Per-layer names, output shapes and parameter counts of an architecture.

    Attributes:
        spec: The architecture text.
        input_shape: The input shape used.
        rows: One per layer, the input first.
        total_params: Sum of all parameters, like Keras ``count_params()``.
    """

    spec: str
    input_shape: Shape
    rows: list[Row]
    total_params: int

    def __str__(self) -> str:
        table = [("layer", "token", "output shape", "params")]
        for row in self.rows:
            shape = "(" + ", ".join("None" if d is None else str(d) for d in row.output_shape)
            table.append(
                (
                    row.name,
                    row.token,
                    shape + ("," if len(row.output_shape) == 1 else "") + ")",
                    f"{row.params:,}",
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        lines = [f"{self.spec}"]
        for i, r in enumerate(table):
            lines.append(
                "  ".join(
                    [
                        r[0].ljust(widths[0]),
                        r[1].ljust(widths[1]),
                        r[2].ljust(widths[2]),
                        r[3].rjust(widths[3]),
                    ]
                ).rstrip()
            )
            if i == 0:
                lines.append("-" * len(lines[-1]))
        lines.append(f"Total params: {self.total_params:,}")
        return "\n".join(lines)


def _modifier_role(keyword: str) -> str:
    token = _tokens.get_token(keyword)
    return token.role if token is not None else "custom"


def _check_options(opts: dict[str, Any]) -> None:
    def bad(name: str, expected: str) -> ValueError:
        return ValueError(f"{name} must be {expected}. Received: {name}={opts[name]!r}")

    if opts["padding"] not in ("same", "valid"):
        raise bad("padding", "'same' or 'valid'")
    if opts["dialect"] not in (None, "ciresan", "keras"):
        raise bad("dialect", "None, 'keras' or 'ciresan'")
    if opts["pooling"] not in (None, "avg", "max"):
        raise bad("pooling", "None, 'avg' or 'max'")
    if opts["activation"] not in ACTIVATIONS:
        raise bad("activation", f"one of {', '.join(ACTIVATIONS)}")
    if opts["head"] is not None and opts["head"] not in ACTIVATIONS:
        raise bad("head", f"None or one of {', '.join(ACTIVATIONS)}")
    rate = opts["dropout"]
    if rate is not None and (isinstance(rate, bool) or not 0 <= rate < 1):
        raise bad("dropout", "None or a rate in [0, 1)")


def _input_shape_arg(input_shape: Any) -> Shape:
    try:
        shape = tuple(input_shape)
        ok = 1 <= len(shape) <= 3 and all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape
        )
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            "input_shape must be a tuple of 1 to 3 positive ints (or None), in Keras order "
            f"(height, width, channels). Received: input_shape={input_shape!r}"
        )
    return shape


def resolve(spec: str | Spec, input_shape: Any = None) -> tuple[Spec, Shape, str | None]:
    """Parse a spec or named architecture and settle its input shape.

    Returns:
        ``(parsed spec, input shape, architecture name or None)``.

    Raises:
        SpecError: For a bad spec, a header that contradicts ``input_shape``, or no shape at all.
    """
    from kzoo.architectures import get_architecture

    name = None
    default: Shape | None = None
    if isinstance(spec, str):
        found = get_architecture(spec)
        if found is not None:
            name, text, default = spec.strip().lower(), found[0], found[1]
            spec = text
        spec = parse(spec)
    given = None if input_shape is None else _input_shape_arg(input_shape)
    if given is not None and spec.input_shape is not None and given != spec.input_shape:
        raise SpecError(
            f"the spec's header says the input is {_fmt(spec.input_shape)}, "
            f"but input_shape={given}",
            spec.text,
            spec.header_span or (0, 0),
            help="give the input shape once: drop the header or the input_shape argument",
        )
    shape = given or spec.input_shape or default
    if shape is None:
        raise SpecError(
            "no input shape: the spec has no header and no input_shape was given",
            spec.text,
            (0, 0),
            help="pass input_shape=(28, 28, 1) or start the spec with a header, e.g. '28x28x1:'",
        )
    return spec, shape, name


def plan(spec: str | Spec, input_shape: Any = None, **options: Any) -> Plan:
    """Name every layer, place BN/activation/dropout, infer shapes; no Keras involved.

    Args:
        spec: Architecture string, named architecture or parsed :class:`Spec`.
        input_shape: Keras-order input shape, unless the spec has a header or is named.
        **options: ``head``, ``padding``, ``dialect``, ``bn``, ``dropout``, ``activation``,
            ``include_top``, ``pooling``, ``prefix`` as in :func:`kzoo.build`.

    Returns:
        The :class:`Plan`.

    Raises:
        SpecError: For a bad spec or a layer that cannot take its input.
        ValueError: For a bad option value.
    """
    opts = dict(
        head=None,
        padding="same",
        dialect=None,
        bn=False,
        dropout=None,
        activation="relu",
        include_top=True,
        pooling=None,
        prefix="",
    )
    unknown = set(options) - set(opts)
    if unknown:
        raise TypeError(f"Unknown build options: {sorted(unknown)}. Expected: {sorted(opts)}")
    opts.update(options)
    _check_options(opts)
    parsed, shape, arch = resolve(spec, input_shape)
    return _Planner(parsed, shape, opts, arch).run()


class _Planner:
    def __init__(self, spec: Spec, shape: Shape, opts: dict[str, Any], arch: str | None) -> None:
        self.spec, self.opts = spec, opts
        self.padding = "valid" if opts["dialect"] == "ciresan" else opts["padding"]
        self.prefix = opts["prefix"] or ""
        self.out = Plan(spec.text, shape, self.prefix + "input_layer", name=arch)
        self.shape = shape
        self.names: set[str] = {self.out.input_name}
        self.block, self.conv_i, self.fc_i = 1, 0, 0
        self.last = "input"
        self.custom: dict[str, int] = {}

    def fail(self, reason: str, span: tuple[int, int] | None, help: str | None = None):
        raise SpecError(reason, self.spec.text, span or (0, len(self.spec.text)), help)

    def add(self, name: str, keyword: str, params: dict[str, Any], label: str, span) -> str:
        unique, k = self.prefix + name, 0
        while unique in self.names:
            k += 1
            unique = f"{self.prefix}{name}_{k}"
        self.names.add(unique)
        token = _tokens.get_token(keyword)
        params = {**params, "name": unique}
        try:
            out_shape, n = token.shape(self.shape, params)
        except TokenProblem as problem:
            where = f" at column {span[0] + 1}" if span else ""
            self.fail(f"{label}{where} {problem.reason}", span, problem.help)
        except (ValueError, TypeError, ArithmeticError) as problem:  # a user shape rule failed
            self.fail(f"{label}: {problem}", span, f"check the shape rule of {keyword!r}")
        self.shape = tuple(out_shape)
        self.out.steps.append(Step(unique, token, params, label, span, self.shape, int(n)))
        return name

    def run(self) -> Plan:
        layers = self.spec.layers()
        roles = [_tokens.get_token(layer.keyword).role for layer in layers]
        dense = [i for i, role in enumerate(roles) if role == "dense"]
        head = dense[-1] if dense else None
        for i, layer in enumerate(layers):
            if layer.keyword == "output" and i != head:
                self.fail(
                    "'output' must be the last dense layer",
                    layer.span,
                    "write 'FC' for hidden dense layers",
                )
            if dict(layer.kwargs).get("head") and i != head:
                self.fail(
                    "'head=' only applies to the last dense layer",
                    layer.span,
                    "move it to the last FC",
                )
        spatial = len(self.shape) > 1
        for i, (layer, role) in enumerate(zip(layers, roles, strict=True)):
            if not self.opts["include_top"] and (
                (spatial and role in ("flatten", "global_pool", "dense"))
                or (not spatial and i == head)
            ):
                break
            self.layer(layer, role, i == head)
        if not self.opts["include_top"] and self.opts["pooling"] and len(self.shape) == 3:
            gap = self.opts["pooling"] == "avg"
            self.add(
                "avg_pool" if gap else "max_pool",
                "GAP" if gap else "GMP",
                {},
                f"(pooling={self.opts['pooling']!r})",
                None,
            )
        return self.out

    def layer(self, layer: Layer, role: str, is_head: bool) -> None:
        label, span = unparse_layer(layer), layer.span
        mods = {_modifier_role(m.keyword): m for m in layer.modifiers}
        kwargs = dict(layer.kwargs)
        act_mod = mods.get("activation")
        bn = "batchnorm" in mods
        rate = mods["dropout"].args[0] if "dropout" in mods else None
        if role in ("conv", "dense") and not is_head:
            bn = bn or bool(self.opts["bn"])
            if role == "dense":  # dropout after hidden FCs only, as in VGG
                rate = rate if rate is not None else self.opts["dropout"]
        act = act_mod.keyword if act_mod else None
        if role == "conv":
            act = act or self.opts["activation"]
            self.conv_i += 1
            name = f"block{self.block}_conv{self.conv_i}"
            flags = dict(layer.flags)
            kernel = (layer.args[0], layer.args[1] if len(layer.args) > 1 else layer.args[0])
            params = dict(
                filters=layer.count,
                kernel_size=kernel,
                strides=(flags.get("s", 1),) * 2,
                dilation_rate=(flags.get("d", 1),) * 2,
                padding="valid" if flags.get("v") else self.padding,
                use_bias=not bn,
                activation="linear" if bn else act,
                kernel_initializer=kwargs.get("init"),
            )
            self.last = self.add(name, "C", params, label, span)
        elif role == "dense":
            if len(self.shape) > 1:
                self.add("flatten", "F", {}, "(flatten)", span)
            if is_head:
                act = act or kwargs.get("head") or self.opts["head"] or "softmax"
                if act == "softmax" and layer.args[0] == 1:
                    self.fail(
                        f"softmax over one unit always outputs 1 ({label} is the head)",
                        span,
                        "use 'FC1+sigmoid' for a binary classifier or 'FC1+linear' for regression",
                    )
                name = "predictions"
            else:
                act = act or self.opts["activation"]
                self.fc_i += 1
                name = f"fc{self.fc_i}"
            params = dict(
                units=layer.args[0],
                use_bias=not bn,
                activation="linear" if bn else act,
                kernel_initializer=kwargs.get("init"),
            )
            self.last = self.add(name, "FC", params, label, span)
        elif role == "pool":
            size = (layer.args[0], layer.args[1] if len(layer.args) > 1 else layer.args[0])
            stride = dict(layer.flags).get("s")
            params = dict(pool_size=size, strides=(stride, stride) if stride else size)
            self.last = self.add(f"block{self.block}_pool", layer.keyword, params, label, span)
            self.block, self.conv_i = self.block + 1, 0
        elif role == "global_pool":
            name = "avg_pool" if layer.keyword == "GAP" else "max_pool"
            self.last = self.add(name, layer.keyword, {}, label, span)
        elif role == "flatten":
            self.last = self.add("flatten", "F", {}, label, span)
        elif role == "batchnorm":
            self.add(f"{self.last}_bn", "BN", {}, label, span)
        elif role == "dropout":
            self.add(f"{self.last}_dropout", "D", {"rate": layer.args[0]}, label, span)
        elif role == "activation":
            self.add(
                f"{self.last}_{layer.keyword}",
                layer.keyword,
                {"activation": layer.keyword},
                label,
                span,
            )
        else:
            token = _tokens.get_token(layer.keyword)
            n = self.custom[layer.keyword] = self.custom.get(layer.keyword, 0) + 1
            params = token.params(layer.count, layer.args, dict(layer.flags), kwargs)
            self.last = self.add(f"{layer.keyword.lower()}{n}", layer.keyword, params, label, span)
        base = self.last
        if role not in ("batchnorm", "dropout", "activation"):
            if bn:
                self.add(f"{base}_bn", "BN", {}, "+BN", span)
            if act not in (None, "linear") and (bn or role not in ("conv", "dense")):
                self.add(f"{base}_{act}", act, {"activation": act}, f"+{act}", span)
            if rate:
                self.add(f"{base}_dropout", "D", {"rate": rate}, f"+D{rate}", span)
            for mod in layer.modifiers:  # user modifiers follow, named like user layers
                if _modifier_role(mod.keyword) == "custom":
                    token = _tokens.get_token(mod.keyword)
                    n = self.custom[mod.keyword] = self.custom.get(mod.keyword, 0) + 1
                    params = token.params(None, mod.args, {}, {})
                    label = f"+{mod.keyword}" + ",".join(map(str, mod.args))
                    self.add(f"{mod.keyword.lower()}{n}", mod.keyword, params, label, span)


def explain(spec: str | Spec, input_shape: Any = None, **options: Any) -> Explanation:
    """Per-layer names, output shapes and parameter counts, without importing Keras.

    Args:
        spec: Architecture string or named architecture (``"vgg19"``).
        input_shape: Keras-order input shape, unless the spec has a header or is named.
        **options: The layer-changing options of :func:`kzoo.build`.

    Returns:
        An :class:`Explanation`; ``str()`` gives a table.
    """
    result = plan(spec, input_shape, **options)
    rows = [Row(result.input_name, "(input)", result.input_shape, 0)]
    rows += [Row(s.name, s.label, s.output_shape, s.n_params) for s in result.steps]
    return Explanation(result.text, result.input_shape, rows, sum(r.params for r in rows))
