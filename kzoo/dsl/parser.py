"""The recursive-descent parser of the notation: characters -> AST with spans.

:func:`parse` walks the grammar (see docs/dsl.md) one character at a time::

    spec     = [options] [header] body
    options  = "{" key=value {"," key=value} "}"   spec-wide: bias, eps, scale
    header   = INT {"x" INT} ":"        Keras order HxWxC   "28x28x1:"
             | INT {"x" INT} "-"        literature CxHxW    "1x28x28-"
    body     = item {"-" item}
    item     = unit {"+" modifier} ["{" key=value {"," key=value} "}"] ["x" INT]
             | KIND "[" body {"|" body} "]" ["x" INT]     KIND: R PR cat add
    unit     = [INT] KEYWORD [number {"," number}] {flag} | "[" body "]" | "(" body ")"

Keywords come from the token registry (:mod:`kzoo.dsl.tokens`). Every failure is a
:class:`kzoo.errors.SpecError` with the offending columns and, where kzoo can guess the intent
(case slips, words from other notations, a named architecture, the nearest keyword), a
suggestion. Pure Python: no Keras.
"""

from __future__ import annotations

from dataclasses import replace

from kzoo.dsl.architectures import list_architectures
from kzoo.dsl.ast import (
    BLOCK_KINDS,
    MAX_DEPTH,
    MAX_LAYERS,
    Block,
    Group,
    Item,
    Layer,
    Modifier,
    Number,
    Spec,
    Value,
)
from kzoo.dsl.tokens import Token, TokenProblem, get_token, keywords
from kzoo.errors import SpecError
from kzoo.suggest import closest, edit_distance

__all__ = ["parse"]

_DIGITS = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
_LETTERS = _LOWER + _UPPER + "_"
_DIALECT_HELP = (
    "kzoo pads convolutions 'same' by default; add 'v' for valid padding ('20C5v'), "
    "or build with dialect='ciresan' for valid padding everywhere"
)
# words from other notations and what kzoo writes instead
_WORD_HINTS = {
    "input": "give the input shape as a header instead, e.g. '28x28x1:'",
    "conv": "a convolution is written filters-C-kernel, e.g. '64C3'",
    "dense": "a dense layer is written 'FC256' (or '256N')",
    "maxpool": "max pooling is written 'MP2'",
    "pool": "max pooling is written 'MP2', average pooling 'AP2'",
    "dropout": "dropout is written 'D0.5' or attached as '+D0.5'",
    "softmax": "the last FC is a softmax head by default: write 'FC10'",
}


def _to_value(text: str) -> Value:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


_CLOSERS = {"[": "]", "(": ")"}
#: spec-wide options of a leading '{...}': what each key sets, for the error that lists them
SPEC_OPTIONS = {
    "bias": "convolutions and dense layers followed by BN keep their bias (true/false)",
    "eps": "epsilon of every BatchNormalization (a number > 0)",
    "scale": "whether every BatchNormalization has gamma (true/false)",
}
_GROUPS_HELP = (
    "branches are written inside a graph group: 'cat[64C1|48C1-64C5]' (concatenate), "
    "'add[A|B]' (sum), 'R[body|shortcut]' (residual)"
)
_BRANCHES = {"R": (1, 2), "PR": (1, 2), "cat": (2, MAX_LAYERS), "add": (2, MAX_LAYERS)}


def parse(spec: str) -> Spec:
    """Parse an architecture string into a :class:`~kzoo.dsl.ast.Spec`.

    Args:
        spec: e.g. ``"28x28x1:20C5-MP2-50C5-MP2-FC256-FC10"``.

    Returns:
        The AST; every node keeps its ``(start, end)`` span in ``spec``.

    Raises:
        SpecError: For any malformed input, with the offending columns and a suggestion.
    """
    if not isinstance(spec, str):
        raise TypeError(f"An architecture spec is a string. Received: {spec!r}")
    return _Parser(spec).parse()


class _Parser:
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
        options = self.spec_options()
        shape, header_span = self.header()
        if not options:  # '28x28x1:{eps=1e-5}...' reads as well as '{eps=1e-5}28x28x1:...'
            options = self.spec_options()
        items = self.body()
        self.skip_ws()
        if self.i < self.n:
            c = self.s[self.i]
            if c in ")]":
                self.fail(f"unmatched {c!r}", self.i, help="remove it or add the opening bracket")
            if c == "|":
                self.fail("'|' outside a graph group", self.i, help=_GROUPS_HELP)
            self.glued()
            self.fail(f"unexpected {c!r}", self.i, help="join layers with '-', e.g. '64C3-MP2'")
        total = sum(item.size() for item in items)
        if total > MAX_LAYERS:
            self.fail(
                f"the architecture expands to {total} layers",
                0,
                self.n,
                help=f"kzoo expands repetition into separate layers, at most {MAX_LAYERS}",
            )
        return Spec(tuple(items), shape, self.s, header_span, tuple(sorted(options.items())))

    def spec_options(self) -> dict[str, Value]:
        if self.peek() != "{":
            return {}
        found = self.options(SPEC_OPTIONS, "the spec")
        for key, value in found.items():
            if key in ("bias", "scale") and not isinstance(value, bool):
                self.fail(f"{key} must be true or false, got {value!r}", 0, self.i)
            if key == "eps" and (isinstance(value, bool | str) or not value > 0):
                self.fail(f"eps must be a number > 0, got {value!r}", 0, self.i, "e.g. eps=1e-5")
        self.skip_ws()
        return found

    def glued(self) -> None:
        """'F C10': a space split a layer token; point at both halves and suggest the whole."""
        gap = self.i
        while gap > 0 and self.s[gap - 1] in " \t":
            gap -= 1
        if gap == self.i or self.item_start >= gap:
            return
        end = self.i
        while end < self.n and self.s[end] in _LETTERS + _DIGITS + ".,":
            end += 1
        whole = self.s[self.item_start : gap] + self.s[self.i : end]
        try:
            joined = _Parser(whole).parse()
        except SpecError:
            return
        if len(joined.items) == 1 and isinstance(joined.items[0], Layer):
            self.fail(
                f"a space splits the layer token '{self.s[self.item_start : end]}'",
                self.item_start,
                end,
                help=f"did you mean '{whole}'?",
            )

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
            if self.peek() in ("", "]", ")", "|"):
                self.fail("expected a layer after '-'", dash, help="remove the '-'")
            items.append(self.item())

    def item(self) -> Layer | Group:
        self.skip_ws()
        start = self.item_start = self.i
        c = self.peek()
        node: Item
        kind = self.block_kind()
        if kind is not None:
            node = self.block(kind)
        elif c in ("[", "("):
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

    def block_kind(self) -> str | None:
        """The word before a '[' that opens a graph group, or None if no such word is here."""
        j = self.i
        while j < self.n and self.s[j] in _LETTERS:
            j += 1
        if j == self.i or j >= self.n or self.s[j] != "[":
            return None
        word = self.s[self.i : j]
        if word not in BLOCK_KINDS:
            best = _nearest(word, list(BLOCK_KINDS))
            self.fail(
                f"unknown group '{word}['",
                self.i,
                j + 1,
                help=(f"did you mean '{best}['? " if best else "")
                + "graph groups are 'R[' (residual), 'PR[' (pre-activation residual), "
                "'cat[' (concatenate) and 'add[' (sum); a plain group is just '['",
            )
        return word

    def block(self, kind: str) -> Block:
        start = self.i
        opener = (start, start + len(kind) + 1)
        if self.depth >= MAX_DEPTH:
            self.fail("brackets nested too deeply", *opener, help=f"at most {MAX_DEPTH} levels")
        self.depth += 1
        self.i = opener[1]
        branches: list[tuple[Item, ...]] = []
        while True:
            self.skip_ws()
            if self.peek() in ("|", "]"):
                what = "group" if not branches and self.peek() == "]" else "branch"
                self.fail(
                    f"empty {what} in '{kind}['",
                    self.i,
                    help="put layers in every branch, e.g. 'cat[64C1|48C1-64C5]'",
                )
            if self.peek() == "":
                self.fail(f"unclosed '{kind}['", *opener, help="add ']' after the group")
            branches.append(tuple(self.body()))
            self.skip_ws()
            found = self.peek()
            if found == "|":
                self.i += 1
                continue
            if found == "]":
                break
            if found == ")":
                self.fail(f"'{kind}[' is closed by ')'", self.i, help="close it with ']'")
            if found:
                self.glued()
                if found not in "-":
                    self.fail(
                        f"unexpected {found!r} in '{kind}['",
                        self.i,
                        help="join layers with '-' and branches with '|'",
                    )
            self.fail(f"unclosed '{kind}['", *opener, help="add ']' after the group")
        self.i += 1
        self.depth -= 1
        low, high = _BRANCHES[kind]
        if not low <= len(branches) <= high:
            residual = high == 2
            takes = "one body and at most one shortcut" if residual else "two or more branches"
            plural = "es" if len(branches) != 1 else ""
            self.fail(
                f"'{kind}[' takes {takes}, got {len(branches)} branch{plural}",
                start,
                self.i,
                help="e.g. 'R[64C3+BN-64C3+BN]' or 'R[body|64C1s2+BN]'"
                if residual
                else f"e.g. '{kind}[64C1|48C1-64C5]'",
            )
        self.after_group()
        return Block(kind, tuple(branches))

    def after_group(self) -> None:
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
            if found == "|":
                self.fail(
                    f"'|' in the plain group opened at column {start + 1}",
                    self.i,
                    help="'|' separates branches only in a graph group: write 'cat[' "
                    "(concatenate), 'add[' (sum) or 'R[' (residual body|shortcut) for the '['",
                )
            if found:
                self.glued()
            self.fail(f"unclosed {opener!r}", start, help=f"add {closer!r} after the group")
        self.i += 1
        self.depth -= 1
        self.after_group()
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

    # -- one layer token, from its keyword on --------------------------------------------
    def resolve(self, word: str, start: int, kw_start: int) -> Token:
        token = get_token(word)
        if token is not None:
            return token
        for k in range(len(word) - 1, 0, -1):  # 'GAPv': keyword then flags, no numbers between
            token = get_token(word[:k])
            rest = word[k:]
            if token is not None and rest.islower() and all(c in token.flags for c in rest):
                self.i = kw_start + k
                return token
        end = self.i
        while end < self.n and self.s[end] in _DIGITS + ".,":
            end += 1
        self.fail(
            f"unknown layer token '{self.s[start:end]}'",
            start,
            end,
            help=self.keyword_help(word, start, kw_start, end, keywords()),
        )

    def keyword_help(
        self, word: str, start: int, kw_start: int, end: int, candidates: list[str]
    ) -> str:
        prefix, suffix = self.s[start:kw_start], self.s[kw_start + len(word) : end]
        same_case = [k for k in candidates if k.lower() == word.lower()]
        if same_case:
            return f"keywords are case-sensitive: did you mean '{prefix}{same_case[0]}{suffix}'?"
        if word.endswith("x") and word[:-1] in candidates and self.at_digit():
            j = self.i
            while j < self.n and self.s[j] in _DIGITS:
                j += 1
            unit = self.s[self.item_start : kw_start + len(word) - 1]
            return f"to repeat '{unit}', put it in brackets: '[{unit}]x{self.s[self.i : j]}'"
        if word.lower() in _WORD_HINTS:
            return _WORD_HINTS[word.lower()]
        named = list_architectures().get(self.s[start:end].lower())
        if named is not None:
            return (
                f"'{self.s[start:end]}' is a named architecture and stands alone; to change it, "
                f"write out its layers: '{named}'"
            )
        if start == 0 and end == self.n:
            names = closest(self.s, list_architectures(), max_results=1)
            if names:
                return f"did you mean the named architecture '{names[0]}'?"
        best = _nearest(word, candidates)
        if best:
            return f"did you mean '{prefix}{best}{suffix}'?"
        return "expected one of: " + ", ".join(sorted(candidates, key=str.lower))

    def flags(self, token: Token, start: int) -> dict[str, Value]:
        flags: dict[str, Value] = {}
        while True:
            c = self.peek()
            if c != "" and c in _LOWER and not (c == "x" and self.at_digit(1)):
                pos = self.i
                self.i += 1
                if c == "x":
                    self.fail("expected a repeat count after 'x'", pos, help="e.g. '64C3x2'")
                if c not in token.flags:
                    if c in "pz" and token.role == "conv":
                        hint = _DIALECT_HELP
                    elif token.flags:
                        hint = f"{token.keyword} takes the flags " + ", ".join(
                            f"'{f}' ({name})" for f, (name, _) in token.flags.items()
                        )
                    else:
                        hint = f"{token.keyword} takes no flags"
                    self.fail(f"unknown flag {c!r} for {token.keyword}", pos, help=hint)
                if c in flags:
                    self.fail(f"flag {c!r} is given twice", pos, help="keep one")
                if token.flags[c][1] is int:
                    if not self.at_digit():
                        self.fail(
                            f"flag {c!r} of {token.keyword} needs a number",
                            pos,
                            help=f"e.g. '{c}2'",
                        )
                    flags[c] = self.integer()
                else:
                    if self.at_digit():
                        self.fail(f"flag {c!r} takes no number", pos, help=f"write just '{c}'")
                    flags[c] = True
            elif c != "" and c in _UPPER:
                hint = _DIALECT_HELP if c in "PZ" else "join layers with '-', e.g. '64C3-MP2'"
                self.fail(f"unexpected {c!r} after '{self.s[start : self.i]}'", self.i, help=hint)
            else:
                return flags

    def modifiers(self) -> list[Modifier]:
        mods: list[Modifier] = []
        while self.peek() == "+":
            plus = self.i
            self.i += 1
            mstart = self.i
            word = self.word()
            if not word:
                self.fail(
                    "expected a modifier after '+'", plus, help="e.g. '+BN', '+D0.5', '+relu'"
                )
            token = get_token(word)
            if token is None or not token.modifier:
                allowed = [k for k in keywords() if get_token(k).modifier]
                end = self.i
                while end < self.n and self.s[end] in _DIGITS + ".,":
                    end += 1
                if token is not None:
                    hint = f"'{word}' is a layer of its own: join it with '-'"
                else:
                    hint = self.keyword_help(word, mstart, mstart, end, allowed)
                self.fail(f"unknown modifier '+{self.s[mstart:end]}'", mstart, end, help=hint)
            args = self.numbers()
            self.check_args(token, args, (mstart, self.i))
            self.run_validate(token, token.params(None, args, {}, {}), (mstart, self.i))
            for other in mods:
                if _same_slot(get_token(other.keyword), token):
                    self.fail(
                        f"'+{self.s[mstart : self.i]}' repeats '+{self.s[slice(*other.span)]}'",
                        mstart,
                        self.i,
                        help="attach each kind of modifier once",
                    )
            mods.append(Modifier(word, tuple(args), (mstart, self.i)))
        return mods

    def kwargs(self, token: Token) -> dict[str, Value]:
        if self.peek() != "{":
            return {}
        return self.options(token.kwargs, token.keyword)

    def options(self, allowed, owner: str) -> dict[str, Value]:
        """``{key=value,...}`` at the cursor, keys checked against ``allowed``."""
        opener = self.i
        self.i += 1
        found: dict[str, Value] = {}
        while True:
            self.skip_ws()
            kstart = self.i
            while self.peek() != "" and self.peek() in _LETTERS + _DIGITS:
                self.i += 1
            key = self.s[kstart : self.i]
            if not key:
                if self.peek() == "":
                    self.fail("unclosed '{'", opener, help="add '}' after the options")
                self.fail("expected key=value", self.i, help="e.g. '64C7{init=gabor}'")
            if key not in allowed:
                best = closest(key, allowed, max_results=1)
                if best:
                    hint = f"did you mean '{best[0]}'?"
                elif allowed:
                    hint = f"{owner} takes the options " + ", ".join(allowed)
                else:
                    hint = f"{owner} takes no options"
                self.fail(f"unknown option {key!r} for {owner}", kstart, self.i, help=hint)
            if key in found:
                self.fail(f"option {key!r} is given twice", kstart, self.i, help="keep one")
            if self.peek() != "=":
                self.fail(f"expected '=' after {key!r}", self.i, help=f"e.g. '{{{key}=...}}'")
            self.i += 1
            vstart = self.i
            while self.peek() != "" and (
                self.peek() in _LETTERS + _DIGITS + "."
                or (  # the sign of an exponent: 1e-5, 1.001e-05
                    self.peek() in "+-"
                    and self.s[self.i - 1] in "eE"
                    and self.i - 1 > vstart
                    and self.s[vstart] in _DIGITS + "."
                    and self.at_digit(1)
                )
            ):
                self.i += 1
            if self.i == vstart:
                self.fail(f"expected a value for {key!r}", vstart, help=f"e.g. '{{{key}=...}}'")
            found[key] = _to_value(self.s[vstart : self.i])
            self.skip_ws()
            c = self.peek()
            if c == ",":
                self.i += 1
            elif c == "}":
                self.i += 1
                return found
            elif c == "":
                self.fail("unclosed '{'", opener, help="add '}' after the options")
            else:
                self.fail(f"unexpected {c!r} in options", self.i, help="write {key=value,...}")

    def check_args(self, token: Token, args: list[Number], span: tuple[int, int]) -> None:
        if len(args) > len(token.args):
            if not token.args:
                hint = f"write '{token.keyword}'"
                # 'F10' for 'FC10': a longer keyword that does take these numbers
                numbers = self.s[span[0] + len(token.keyword) : span[1]]
                longer = [
                    k for k in keywords()
                    if k.startswith(token.keyword) and k != token.keyword and get_token(k).args
                ]  # fmt: skip
                if longer:
                    hint += f", or '{sorted(longer)[0]}{numbers}'"
                self.fail(f"{token.keyword} takes no numbers", *span, help=hint)
            self.fail(
                f"{token.keyword} takes at most {len(token.args)} number(s) "
                f"({', '.join(token.args)})",
                *span,
            )
        if len(args) < token.min_args:
            self.fail(
                f"{token.keyword} needs a number after it "
                f"({', '.join(token.args[: token.min_args])})",
                *span,
                help=token.doc or None,
            )

    def run_validate(self, token: Token, params: dict, span: tuple[int, int]) -> None:
        if token.validate is None:
            return
        try:
            token.validate(params)
        except TokenProblem as problem:
            self.fail(problem.reason, *span, help=problem.help)

    def check(self, token, count, args, flags, modifiers, kwargs, span, kw_start) -> Layer:
        written = self.s[span[0] : span[1]]
        if count is not None and token.count is None:
            hint = f"did you mean '{token.keyword}{count}'?" if token.args else None
            self.fail(
                f"{token.keyword} takes no leading number", span[0], kw_start, help=hint or None
            )
        if count is None and token.count_required:
            self.fail(
                f"{token.keyword} needs a number before it ({token.count})",
                *span,
                help=token.doc or f"e.g. '64{written}'",
            )
        self.check_args(token, args, span)
        self.run_validate(token, token.params(count, args, flags, kwargs), span)
        order = list(token.flags)
        flag_items = tuple(sorted(flags.items(), key=lambda kv: order.index(kv[0])))
        keyword = token.keyword
        if token.alias_of is not None:  # '150N' is 'FC150'
            keyword, args, count = token.alias_of, [count, *args], None
        return Layer(
            keyword,
            count,
            tuple(args),
            flag_items,
            tuple(modifiers),
            tuple(sorted(kwargs.items())),
            span=span,
        )


def _nearest(word: str, candidates: list[str]) -> str | None:
    """The closest keyword; among equally close ones the one of the same length ('CF' -> 'FC')."""
    found = closest(word, candidates)
    if not found:
        return None
    return min(
        found, key=lambda c: (edit_distance(word.lower(), c.lower()), abs(len(c) - len(word)))
    )


def _same_slot(a: Token | None, b: Token) -> bool:
    """Whether two modifiers fill the same slot (two activations, two dropouts)."""
    return a is not None and (a.role == b.role if a.role != "custom" else a.keyword == b.keyword)
