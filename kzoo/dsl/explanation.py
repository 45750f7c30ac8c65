"""What :func:`kzoo.explain` returns: a table of layer names, output shapes and parameters.

Pure Python: an :class:`Explanation` is made from the builder's own plan
(:func:`kzoo.dsl.plan`), so it cannot disagree with the model :func:`kzoo.build` makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kzoo.dsl.ast import Spec
from kzoo.dsl.builtin_tokens import Shape
from kzoo.dsl.planner import plan

__all__ = ["Explanation", "Row", "explain"]


@dataclass(frozen=True)
class Row:
    """One line of :class:`Explanation`."""

    name: str
    token: str
    output_shape: Shape
    params: int
    inputs: tuple[str, ...] = ()
    """The layers it reads when that is not just the row above (a shortcut, a merge)."""


@dataclass
class Explanation:
    """Per-layer names, output shapes and parameter counts of an architecture.

    A graph (residual groups, branches) prints an ``inputs`` column on the rows that do not
    read the row above: a shortcut, the first layer of a branch, an add or a concatenation.

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
        graph = any(row.inputs for row in self.rows)
        table = [("layer", "token", "output shape", "params", "inputs" if graph else "")]
        for row in self.rows:
            shape = "(" + ", ".join("None" if d is None else str(d) for d in row.output_shape)
            table.append(
                (
                    row.name,
                    row.token,
                    shape + ("," if len(row.output_shape) == 1 else "") + ")",
                    f"{row.params:,}",
                    ", ".join(row.inputs),
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        lines = [f"{self.spec}"]
        for i, r in enumerate(table):
            lines.append(
                "  ".join(
                    [
                        r[0].ljust(widths[0]),
                        r[1].ljust(widths[1]),
                        r[2].ljust(widths[2]),
                        r[3].rjust(widths[3]),
                        r[4],
                    ]
                ).rstrip()
            )
            if i == 0:
                lines.append("-" * len(lines[-1]))
        lines.append(f"Total params: {self.total_params:,}")
        return "\n".join(lines)


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
    for step in result.steps:
        shown = () if step.inputs == (rows[-1].name,) else step.inputs
        rows.append(Row(step.name, step.label, step.output_shape, step.n_params, shown))
    return Explanation(result.text, result.input_shape, rows, sum(r.params for r in rows))
