"""The syntax tree of the notation: Spec, Layer, Group, Modifier, and AST -> canonical text.

:func:`kzoo.dsl.parse` builds these nodes; each keeps the ``(start, end)`` columns it came
from, so every later error (unknown token, impossible shape) can draw a caret under the exact
text. :meth:`Spec.unparse` writes the canonical text back. Pure Python: no Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = [
    "BLOCK_KINDS",
    "MAX_DEPTH",
    "MAX_LAYERS",
    "Block",
    "Group",
    "Layer",
    "Modifier",
    "Number",
    "Spec",
    "Value",
    "format_number",
    "unparse_item",
    "unparse_layer",
    "unparse_options",
]

MAX_LAYERS = 1000  # bound on the expanded network: repetition multiplies quickly
MAX_DEPTH = 20  # bound on bracket nesting, far below Python's recursion limit
Number = int | float
Value = int | float | str | bool
#: the words that open a graph group: residual, pre-activation residual, concat, sum
BLOCK_KINDS = ("R", "PR", "cat", "add")


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

    items: tuple[Item, ...]
    times: int = 1
    span: tuple[int, int] = field(default=(0, 0), compare=False)

    def size(self) -> int:
        return self.times * sum(item.size() for item in self.items)


@dataclass(frozen=True)
class Block:
    """A graph group: ``R[body]``, ``R[body|shortcut]``, ``PR[...]``, ``cat[a|b]``, ``add[a|b]``.

    Attributes:
        kind: One of :data:`BLOCK_KINDS`.
        branches: The bodies between ``|``, each a tuple of items; for ``R``/``PR`` the body,
            then the shortcut if one is written.
        times: Repetition count (``x3``); a repeated ``R``/``PR`` strides in its first copy only.
        span: ``(start, end)`` columns in the source text, the ``R[`` included.
    """

    kind: str
    branches: tuple[tuple[Item, ...], ...]
    times: int = 1
    span: tuple[int, int] = field(default=(0, 0), compare=False)

    def size(self) -> int:
        return self.times * (1 + sum(item.size() for branch in self.branches for item in branch))


Item = Layer | Group | Block


@dataclass(frozen=True)
class Spec:
    """A parsed architecture string.

    Attributes:
        items: Top-level items.
        input_shape: From the header, in Keras order (H, W, C), or None.
        text: The source text (spans index into it).
        header_span: Columns of the header, or None.
        options: Spec-wide ``(key, value)`` pairs from a leading ``{...}`` (``bias``, ``eps``,
            ``scale``), sorted by key.
    """

    items: tuple[Item, ...]
    input_shape: tuple[int, ...] | None = None
    text: str = field(default="", compare=False)
    header_span: tuple[int, int] | None = field(default=None, compare=False)
    options: tuple[tuple[str, Value], ...] = ()

    def layers(self) -> list[Layer]:
        """The items with repetition expanded, each layer keeping its source span."""
        out: list[Layer] = []

        def walk(items: tuple[Item, ...]) -> None:
            for item in items:
                for _ in range(item.times):
                    if isinstance(item, Group):
                        walk(item.items)
                    elif isinstance(item, Block):
                        for branch in item.branches:
                            walk(branch)
                    else:
                        out.append(replace(item, times=1))

        walk(self.items)
        return out

    def unparse(self) -> str:
        """The canonical text of this AST (``HxWxC:`` header, ``FC`` for ``N``)."""
        head = "x".join(str(d) for d in self.input_shape) + ":" if self.input_shape else ""
        return unparse_options(self.options) + head + "-".join(unparse_item(i) for i in self.items)

    def __str__(self) -> str:
        return self.unparse()


def format_number(value: Number) -> str:
    """Numbers as the notation writes them: ``3``, ``0.5``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def unparse_options(options: tuple[tuple[str, Value], ...]) -> str:
    """``{k=v,...}`` for a layer's or a spec's options, or ``""`` when there are none."""
    if not options:
        return ""
    return "{" + ",".join(f"{k}={format_number(v)}" for k, v in options) + "}"


def unparse_item(item: Item) -> str:
    """Canonical text of one item, brackets added where a bare ``x2`` would be misread."""
    if isinstance(item, Group):
        text = "[" + "-".join(unparse_item(i) for i in item.items) + "]"
        return text + (f"x{item.times}" if item.times != 1 else "")
    if isinstance(item, Block):
        branches = ("-".join(unparse_item(i) for i in branch) for branch in item.branches)
        text = item.kind + "[" + "|".join(branches) + "]"
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
    parts.append(unparse_options(layer.kwargs))
    text = "".join(parts)
    return text if layer.times == 1 else unparse_item(layer)
