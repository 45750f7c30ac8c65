"""The recursive-descent parser behind :func:`kzoo.dsl.parse`: characters -> AST with spans.

:class:`_Parser` walks the grammar of the notation (header, ``-``-joined items, bracketed
groups, ``x`` repetition) one character at a time; the parts of a single layer token after its
keyword live in :mod:`kzoo._token_syntax`. Every failure is a :class:`kzoo.errors.SpecError`
with the offending columns. Pure Python: no Keras.
"""

from __future__ import annotations

from dataclasses import replace

from kzoo._token_syntax import _DIGITS, _LETTERS, _TokenSyntax
from kzoo.dsl import MAX_DEPTH, MAX_LAYERS, Group, Layer, Number, Spec
from kzoo.errors import SpecError

_CLOSERS = {"[": "]", "(": ")"}


class _Parser(_TokenSyntax):
    """Recursive descent over characters; every failure is a SpecError with a span."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.depth = 0
        self.item_start = 0

    # -- helpers -------------------------------------------------------------------------
    def fail(self, reason: str, start: int, end: int | None = None, help: str | None = None):
        raise SpecError(reason, self.s, (start, start + 1 if end is None else end), help)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < self.n else ""

    def at_digit(self, k: int = 0) -> bool:
        c = self.peek(k)
        return c != "" and c in _DIGITS

    def skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1

    def integer(self) -> int:
        start = self.i
        while self.at_digit():
            self.i += 1
        return int(self.s[start : self.i])

    def number(self) -> Number:
        start = self.i
        while self.at_digit():
            self.i += 1
        if self.peek() == "." and self.at_digit(1):
            self.i += 1
            while self.at_digit():
                self.i += 1
            return float(self.s[start : self.i])
        return int(self.s[start : self.i])

    def numbers(self) -> list[Number]:
        values: list[Number] = []
        if not (self.at_digit() or (self.peek() == "." and self.at_digit(1))):
            return values
        values.append(self.number())
        while self.peek() == ",":
            comma = self.i
            self.i += 1
            if not (self.at_digit() or (self.peek() == "." and self.at_digit(1))):
                self.fail("expected a number after ','", comma, help="e.g. '64C1,7'")
            values.append(self.number())
        return values

    def word(self) -> str:
        start = self.i
        while self.peek() != "" and self.peek() in _LETTERS:
            run = self.s[start : self.i]
            # 'FC4096x2': an upper-case keyword ends where a repetition starts
            if self.peek() == "x" and self.at_digit(1) and run and run.isupper():
                break
            self.i += 1
        return self.s[start : self.i]

    # -- grammar -------------------------------------------------------------------------
    def parse(self) -> Spec:
        if not self.s.strip():
            self.fail(
                "empty architecture string",
                0,
                self.n,
                help="write layers joined by '-', e.g. '20C5-MP2-50C5-MP2-FC256-FC10'",
            )
        self.skip_ws()
        shape, header_span = self.header()
        items = self.body()
        self.skip_ws()
        if self.i < self.n:
            c = self.s[self.i]
            if c in ")]":
                self.fail(f"unmatched {c!r}", self.i, help="remove it or add the opening bracket")
            self.fail(f"unexpected {c!r}", self.i, help="join layers with '-', e.g. '64C3-MP2'")
        total = sum(item.size() for item in items)
        if total > MAX_LAYERS:
            self.fail(
                f"the architecture expands to {total} layers",
                0,
                self.n,
                help=f"kzoo expands repetition into separate layers, at most {MAX_LAYERS}",
            )
        return Spec(tuple(items), shape, self.s, header_span)

    def header(self) -> tuple[tuple[int, ...] | None, tuple[int, int] | None]:
        start = j = self.i
        dims: list[int] = []
        while True:
            k = j
            while k < self.n and self.s[k] in _DIGITS:
                k += 1
            if k == j:
                return None, None
            dims.append(int(self.s[j:k]))
            if k < self.n and self.s[k] == "x" and k + 1 < self.n and self.s[k + 1] in _DIGITS:
                j = k + 1
                continue
            break
        if k >= self.n or self.s[k] not in ":-" or (self.s[k] == "-" and len(dims) < 2):
            return None, None
        sep, end = self.s[k], k + 1
        text = self.s[start:k]
        if any(d < 1 for d in dims):
            self.fail("input dimensions must be positive", start, k, help="e.g. '28x28x1:'")
        if sep == ":" and len(dims) == 3 and dims[0] in (1, 3) and dims[1] == dims[2] > 4:
            self.fail(
                f"input header '{text}:' looks channels-first",
                start,
                end,
                help=f"write '{dims[1]}x{dims[2]}x{dims[0]}:' (Keras order HxWxC) "
                f"or '{text}-' (literature order CxHxW)",
            )
        if sep == "-" and len(dims) == 3 and dims[2] in (1, 3) and dims[0] == dims[1] > 4:
            self.fail(
                f"literature header '{text}-' is channels x height x width, "
                f"so this means {dims[0]} channels",
                start,
                end,
                help=f"write '{text}:' (Keras order HxWxC) or "
                f"'{dims[2]}x{dims[0]}x{dims[1]}-' (literature order CxHxW)",
            )
        if sep == "-" and len(dims) == 3:
            dims = [dims[1], dims[2], dims[0]]
        self.i = end
        self.skip_ws()
        return tuple(dims), (start, end)

    def body(self) -> list[Layer | Group]:
        items = [self.item()]
        while True:
            self.skip_ws()
            if self.peek() != "-":
                return items
            dash = self.i
            self.i += 1
            self.skip_ws()
            if self.peek() in ("", "]", ")"):
                self.fail("expected a layer after '-'", dash, help="remove the '-'")
            items.append(self.item())

    def item(self) -> Layer | Group:
        self.skip_ws()
        start = self.item_start = self.i
        c = self.peek()
        node: Layer | Group
        if c in ("[", "("):
            node = self.group()
        elif c == "x" and self.at_digit(1):
            self.fail(
                "a repeat count follows the layer it repeats",
                start,
                start + 2,
                help="e.g. '64C3x2' or '[64C3-MP2]x2'",
            )
        elif c == "":
            self.fail("expected a layer", start, help="e.g. '64C3', 'MP2' or 'FC10'")
        elif c != "" and c in _DIGITS + _LETTERS:
            node = self.layer()
        elif c == "+":
            self.fail(
                "'+' attaches a modifier to the layer before it",
                start,
                help="e.g. '64C3+BN' or 'FC256+D0.5'",
            )
        else:
            self.fail(f"unexpected {c!r}", start, help="a layer looks like '64C3', 'MP2' or 'FC10'")
        times = self.repeat()
        node = replace(node, times=times, span=(start, self.i))
        size = node.size()
        if size > MAX_LAYERS:
            self.fail(
                f"'{self.s[start : self.i]}' expands to {size} layers",
                start,
                self.i,
                help=f"kzoo expands repetition into separate layers, at most {MAX_LAYERS}",
            )
        return node

    def group(self) -> Group:
        start = self.i
        opener = self.s[start]
        closer = _CLOSERS[opener]
        if self.depth >= MAX_DEPTH:
            self.fail("brackets nested too deeply", start, help=f"at most {MAX_DEPTH} levels")
        self.depth += 1
        self.i += 1
        self.skip_ws()
        if self.peek() in ("]", ")"):
            self.fail("empty group", start, self.i + 1, help="put layers inside: '[64C3-MP2]x2'")
        items = self.body()
        self.skip_ws()
        found = self.peek()
        if found != closer:
            if found in ("]", ")"):
                self.fail(
                    f"{opener!r} is closed by {found!r}", self.i, help=f"close it with {closer!r}"
                )
            self.fail(f"unclosed {opener!r}", start, help=f"add {closer!r} after the group")
        self.i += 1
        self.depth -= 1
        after = self.peek()
        if after in ("+", "{"):
            what = "a modifier" if after == "+" else "options"
            self.fail(
                f"{what} cannot attach to a group",
                self.i,
                help="write it on each layer inside the brackets, e.g. '[64C3+BN-MP2]x2'",
            )
        if after == "_":
            self.fail(
                "repetition is written 'x3', not '_3'", self.i, help="write '[...]x3' to repeat"
            )
        return Group(tuple(items))

    def repeat(self) -> int:
        if self.peek() != "x":
            return 1
        pos = self.i
        self.i += 1
        if not self.at_digit():
            self.fail("expected a repeat count after 'x'", pos, help="e.g. '64C3x2'")
        n = self.integer()
        if n < 1:
            self.fail("a repeat count must be at least 1", pos, self.i, help="remove the 'x0'")
        if n > MAX_LAYERS:
            self.fail(
                f"repeat count {n} is too large",
                pos,
                self.i,
                help=f"kzoo expands repetition into separate layers, at most {MAX_LAYERS}",
            )
        return n

    def layer(self) -> Layer:
        start = self.i
        count = None
        if self.at_digit():
            count = self.integer()
            if self.peek() == "x" and self.at_digit(1):
                self.fail(
                    "input dimensions belong at the start of the spec",
                    start,
                    self.i + 2,
                    help="write the input shape first, followed by ':', e.g. '28x28x1:20C5-...'",
                )
            if self.peek() == "*":
                self.fail(
                    f"repetition is written '[...]x{count}', not '{count}*(...)'",
                    start,
                    self.i + 1,
                    help=f"write '[...]x{count}'",
                )
        kw_start = self.i
        word = self.word()
        if not word:
            c = self.peek()
            if count is not None and c in ("", "-", "]", ")"):
                self.fail(
                    f"'{count}' has no layer keyword",
                    start,
                    self.i,
                    help=f"did you mean 'FC{count}' (dense) or '{count}C3' (convolution)?",
                )
            self.fail(
                f"unexpected {c!r}" if c else "expected a layer keyword",
                self.i,
                help="a layer looks like '64C3', 'MP2' or 'FC10'",
            )
        token = self.resolve(word, start, kw_start)
        args = self.numbers()
        flags = self.flags(token, start)
        modifiers = self.modifiers()
        kwargs = self.kwargs(token)
        unit_span = (start, self.i)
        return self.check(token, count, args, flags, modifiers, kwargs, unit_span, kw_start)
