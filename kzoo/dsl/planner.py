"""From a parsed spec to a :class:`Plan`: named layers with shapes and parameter counts.

The planner decides everything about a built model except creating Keras objects: layer
names (the keras.applications scheme), the implicit Flatten, the head and its activation, where
BatchNormalization, activations and dropout go, the padding. :mod:`kzoo.builder` turns the
plan into Keras layers one to one, and :func:`kzoo.explain` prints it, so the two cannot
disagree. Each token's shape rule gives the shapes; a failure becomes a
:class:`kzoo.errors.SpecError` that points at the layer's columns. Pure Python: no Keras.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kzoo.dsl.architectures import get_architecture
from kzoo.dsl.ast import Layer, Spec, unparse_layer
from kzoo.dsl.builtin_tokens import Shape, format_shape
from kzoo.dsl.parser import parse
from kzoo.dsl.tokens import ACTIVATIONS, Token, TokenProblem, get_token
from kzoo.errors import Hint, SpecError

__all__ = ["Plan", "Step", "plan", "resolve"]


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
    token: Token
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
            f"the spec's header says the input is {format_shape(spec.input_shape)}, "
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
            help="start the spec with a header, e.g. '28x28x1:'",
            hints=[
                Hint(
                    "give_input_shape",
                    "pass input_shape=(28, 28, 1), in Keras order (height, width, channels)",
                    {"example": "28x28x1"},
                )
            ],
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


def _modifier_role(keyword: str) -> str:
    token = get_token(keyword)
    return token.role if token is not None else "custom"


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
        self.custom_counts: dict[str, int] = {}

    def fail(self, reason: str, span: tuple[int, int] | None, help: str | None = None):
        raise SpecError(reason, self.spec.text, span or (0, len(self.spec.text)), help)

    def add(self, name: str, keyword: str, params: dict[str, Any], label: str, span) -> str:
        unique, k = self.prefix + name, 0
        while unique in self.names:
            k += 1
            unique = f"{self.prefix}{name}_{k}"
        self.names.add(unique)
        token = get_token(keyword)
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
        roles = [get_token(layer.keyword).role for layer in layers]
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
        """Plan one spec layer: the step of its role, then what is attached to it."""
        mods = {_modifier_role(m.keyword): m for m in layer.modifiers}
        act_mod = mods.get("activation")
        bn = "batchnorm" in mods
        rate = mods["dropout"].args[0] if "dropout" in mods else None
        if role in ("conv", "dense") and not is_head:
            bn = bn or bool(self.opts["bn"])
            if role == "dense":  # dropout after hidden FCs only, as in VGG
                rate = rate if rate is not None else self.opts["dropout"]
        act = act_mod.keyword if act_mod else None
        act = self._ROLES[role](self, layer, bn, act, is_head)
        if role not in ("batchnorm", "dropout", "activation"):
            self.attach(layer, role, bn, act, rate)

    # Each role's step; returns the activation it leaves to a separate layer (None: none).

    def conv(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        act = act or self.opts["activation"]
        self.conv_i += 1
        flags, kwargs = dict(layer.flags), dict(layer.kwargs)
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
        name = f"block{self.block}_conv{self.conv_i}"
        self.last = self.add(name, "C", params, unparse_layer(layer), layer.span)
        return act

    def dense(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        label, span, kwargs = unparse_layer(layer), layer.span, dict(layer.kwargs)
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
        return act

    def pool(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        size = (layer.args[0], layer.args[1] if len(layer.args) > 1 else layer.args[0])
        stride = dict(layer.flags).get("s")
        params = dict(pool_size=size, strides=(stride, stride) if stride else size)
        name = f"block{self.block}_pool"
        self.last = self.add(name, layer.keyword, params, unparse_layer(layer), layer.span)
        self.block, self.conv_i = self.block + 1, 0
        return act

    def global_pool(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        name = "avg_pool" if layer.keyword == "GAP" else "max_pool"
        self.last = self.add(name, layer.keyword, {}, unparse_layer(layer), layer.span)
        return act

    def flatten(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        self.last = self.add("flatten", "F", {}, unparse_layer(layer), layer.span)
        return act

    def batchnorm(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> None:
        self.add(f"{self.last}_bn", "BN", {}, unparse_layer(layer), layer.span)

    def dropout(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> None:
        rate = {"rate": layer.args[0]}
        self.add(f"{self.last}_dropout", "D", rate, unparse_layer(layer), layer.span)

    def activation(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> None:
        name, keyword = f"{self.last}_{layer.keyword}", layer.keyword
        self.add(name, keyword, {"activation": keyword}, unparse_layer(layer), layer.span)

    def custom(self, layer: Layer, bn: bool, act: str | None, is_head: bool) -> str | None:
        token = get_token(layer.keyword)
        params = token.params(layer.count, layer.args, dict(layer.flags), dict(layer.kwargs))
        name = self.custom_name(layer.keyword)
        self.last = self.add(name, layer.keyword, params, unparse_layer(layer), layer.span)
        return act

    def custom_name(self, keyword: str) -> str:
        """User layers are named after their keyword and counted: ``gn1``, ``gn2``, ..."""
        n = self.custom_counts[keyword] = self.custom_counts.get(keyword, 0) + 1
        return f"{keyword.lower()}{n}"

    _ROLES: ClassVar[dict[str, Callable[..., str | None]]] = {
        "conv": conv,
        "dense": dense,
        "pool": pool,
        "global_pool": global_pool,
        "flatten": flatten,
        "batchnorm": batchnorm,
        "dropout": dropout,
        "activation": activation,
        "custom": custom,
    }

    def attach(self, layer: Layer, role: str, bn: bool, act: str | None, rate: Any) -> None:
        """BN, then the activation, then dropout after the step; user modifiers follow."""
        base, span = self.last, layer.span
        if bn:
            self.add(f"{base}_bn", "BN", {}, "+BN", span)
        if act not in (None, "linear") and (bn or role not in ("conv", "dense")):
            self.add(f"{base}_{act}", act, {"activation": act}, f"+{act}", span)
        if rate:
            self.add(f"{base}_dropout", "D", {"rate": rate}, f"+D{rate}", span)
        for mod in layer.modifiers:  # user modifiers, named like user layers
            if _modifier_role(mod.keyword) == "custom":
                params = get_token(mod.keyword).params(None, mod.args, {}, {})
                label = f"+{mod.keyword}" + ",".join(map(str, mod.args))
                self.add(self.custom_name(mod.keyword), mod.keyword, params, label, span)
