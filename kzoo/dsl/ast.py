"""The syntax tree of the notation: Spec, Layer, Group, Modifier, and AST -> canonical text.

:func:`kzoo.dsl.parse` builds these nodes; each keeps the ``(start, end)`` columns it came
from, so every later error (unknown token, impossible shape) can draw a caret under the exact
text. :meth:`Spec.unparse` writes the canonical text back. Pure Python: no Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = [
    "MAX_DEPTH",
    "MAX_LAYERS",
    "Group",
    "Layer",
    "Modifier",
    "Number",
    "Spec",
    "Value",
    "format_number",
    "unparse_item",
    "unparse_layer",
]

MAX_LAYERS = 1000  # bound on the expanded network: repetition multiplies quickly
MAX_DEPTH = 20  # bound on bracket nesting, far below Python's recursion limit
Number = int | float
Value = int | float | str | bool


@dataclass(frozen=True)
class Modifier:
    """An attached layer: the ``BN`` of ``64C3+BN``. Spans do not take part in equality."""

    keyword: str
    args: tuple[Number, ...] = ()
    span: tuple[int, int] = field(default=(0, 0), compare=False)


@dataclass(frozen=True)
class Layer:
    """One layer token, e.g. ``64C3s2+BN{init=gabor}x2``.

    Attributes:
        keyword: Canonical keyword (``N`` is stored as ``FC``).
        count: The leading integer (filters of ``64C3``), or None.
        args: Numbers after the keyword.
        flags: ``(letter, value)`` pairs in the token's declared order.
        modifiers: Attached layers, in written order.
        kwargs: ``(key, value)`` pairs from ``{...}``, sorted by key.
        times: Repetition count (``x2``).
        span: ``(start, end)`` columns in the source text.
    """

    keyword: str
    count: int | None = None
    args: tuple[Number, ...] = ()
    flags: tuple[tuple[str, Value], ...] = ()
    modifiers: tuple[Modifier, ...] = ()
    kwargs: tuple[tuple[str, Value], ...] = ()
    times: int = 1
    span: tuple[int, int] = field(default=(0, 0), compare=False)

    def size(self) -> int:
        return self.times


@dataclass(frozen=True)
class Group:
    """A bracketed group ``[A-B]x3``: its items repeated with independent weights."""

    items: tuple[Layer | Group, ...]
    times: int = 1
    span: tuple[int, int] = field(default=(0, 0), compare=False)

    def size(self) -> int:
        return self.times * sum(item.size() for item in self.items)


@dataclass(frozen=True)
class Spec:
    """A parsed architecture string.

    Attributes:
        items: Top-level items.
        input_shape: From the header, in Keras order (H, W, C), or None.
        text: The source text (spans index into it).
        header_span: Columns of the header, or None.
    """

    items: tuple[Layer | Group, ...]
    input_shape: tuple[int, ...] | None = None
    text: str = field(default="", compare=False)
    header_span: tuple[int, int] | None = field(default=None, compare=False)

    def layers(self) -> list[Layer]:
        """The items with repetition expanded, each layer keeping its source span."""
        out: list[Layer] = []

        def walk(items: tuple[Layer | Group, ...]) -> None:
            for item in items:
                for _ in range(item.times):
                    if isinstance(item, Group):
                        walk(item.items)
                    else:
                        out.append(replace(item, times=1))

        walk(self.items)
        return out

    def unparse(self) -> str:
        """The canonical text of this AST (``HxWxC:`` header, ``FC`` for ``N``)."""
        head = "x".join(str(d) for d in self.input_shape) + ":" if self.input_shape else ""
        return head + "-".join(unparse_item(item) for item in self.items)

    def __str__(self) -> str:
        return self.unparse()


def format_number(value: Number) -> str:
    """Numbers as the notation writes them: ``3``, ``0.5``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def unparse_item(item: Layer | Group) -> str:
    """Canonical text of one item, brackets added where a bare ``x2`` would be misread."""
    if isinstance(item, Group):
        text = "[" + "-".join(unparse_item(i) for i in item.items) + "]"
        return text + (f"x{item.times}" if item.times != 1 else "")
    text = unparse_layer(replace(item, times=1))
    if item.times == 1:
        return text
    # a trailing keyword that is not all upper case would swallow the 'x' ('relux2')
    tail = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
    word = text[len(tail) :]
    if word and not word.isupper() and _ends_with_keyword(item):
        return f"[{text}]x{item.times}"
    return f"{text}x{item.times}"


def _ends_with_keyword(item: Layer) -> bool:
    if item.kwargs:
        return False
    if item.modifiers:
        return not item.modifiers[-1].args
    return not item.args and not item.flags


def unparse_layer(layer: Layer) -> str:
    """Canonical text of one layer token (without repetition unless ``times`` > 1)."""
    parts = [str(layer.count) if layer.count is not None else "", layer.keyword]
    parts.append(",".join(format_number(a) for a in layer.args))
    for letter, value in layer.flags:
        parts.append(letter if value is True else f"{letter}{value}")
    for mod in layer.modifiers:
        parts.append("+" + mod.keyword + ",".join(format_number(a) for a in mod.args))
    if layer.kwargs:
        parts.append("{" + ",".join(f"{k}={format_number(v)}" for k, v in layer.kwargs) + "}")
    text = "".join(parts)
    return text if layer.times == 1 else unparse_item(layer)
