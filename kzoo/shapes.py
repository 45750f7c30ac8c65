"""From a parsed spec to a list of named layers with shapes and parameter counts, in pure Python.

The planner decides everything about a built model except creating Keras objects: layer
names (the keras.applications scheme), the implicit Flatten, the head and its activation, where
BatchNormalization, activations and dropout go, the padding. :func:`kzoo.build` turns the plan
into Keras layers one to one, and :func:`explain` prints it, so the two cannot disagree.
This module holds the public entry points and the :class:`Plan`/:class:`Explanation` tables;
the placement rules live in :mod:`kzoo._planner`, the built-in tokens (their syntax and shape
rules) in :mod:`kzoo._builtin_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kzoo import tokens as _tokens
from kzoo._builtin_tokens import Shape, _fmt, builtin_tokens
from kzoo.dsl import Spec, parse
from kzoo.errors import SpecError
from kzoo.tokens import ACTIVATIONS

__all__ = ["Explanation", "Plan", "Row", "Step", "builtin_tokens", "explain", "plan"]


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
    # imported here: the planner fills this module's Plan and Step, so it imports this module
    from kzoo._planner import _Planner

    return _Planner(parsed, shape, opts, arch).run()


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
