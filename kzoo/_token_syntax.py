"""One layer token from its keyword on: the keyword, flags, ``+modifiers``, ``{options}``.

Resolves the keyword against the token registry, with the help shown when it is unknown (case
slips, words from other notations, a named architecture, the nearest keyword), then reads and
checks what follows it. :class:`_TokenSyntax` is a mixin of :class:`kzoo._parser._Parser`: it
moves the parser's cursor (``s``, ``i``, ``n``, ``item_start``) with its scanning helpers
(``fail``, ``peek``, ``at_digit``, ``integer``, ``numbers``, ``word``, ``skip_ws``).
Pure Python: no Keras.
"""

from __future__ import annotations

from kzoo import tokens as _tokens
from kzoo._suggest import closest, edit_distance
from kzoo.dsl import Layer, Modifier, Number, Value

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


class _TokenSyntax:
    """Parser methods for the inside of one layer token (mixed into ``_Parser``)."""

    def resolve(self, word: str, start: int, kw_start: int) -> _tokens.Token:
        token = _tokens.get_token(word)
        if token is not None:
            return token
        for k in range(len(word) - 1, 0, -1):  # 'GAPv': keyword then flags, no numbers between
            token = _tokens.get_token(word[:k])
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
            help=self.keyword_help(word, start, kw_start, end, _tokens.keywords()),
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
        if start == 0 and end == self.n:
            from kzoo.architectures import list_architectures

            names = closest(self.s, list_architectures(), max_results=1)
            if names:
                return f"did you mean the named architecture '{names[0]}'?"
        best = _nearest(word, candidates)
        if best:
            return f"did you mean '{prefix}{best}{suffix}'?"
        return "expected one of: " + ", ".join(sorted(candidates, key=str.lower))

    def flags(self, token: _tokens.Token, start: int) -> dict[str, Value]:
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
            token = _tokens.get_token(word)
            if token is None or not token.modifier:
                allowed = [k for k in _tokens.keywords() if _tokens.get_token(k).modifier]
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
                if _same_slot(_tokens.get_token(other.keyword), token):
                    self.fail(
                        f"'+{self.s[mstart : self.i]}' repeats '+{self.s[slice(*other.span)]}'",
                        mstart,
                        self.i,
                        help="attach each kind of modifier once",
                    )
            mods.append(Modifier(word, tuple(args), (mstart, self.i)))
        return mods

    def kwargs(self, token: _tokens.Token) -> dict[str, Value]:
        if self.peek() != "{":
            return {}
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
            if key not in token.kwargs:
                best = closest(key, token.kwargs, max_results=1)
                if best:
                    hint = f"did you mean '{best[0]}'?"
                elif token.kwargs:
                    hint = f"{token.keyword} takes the options " + ", ".join(token.kwargs)
                else:
                    hint = f"{token.keyword} takes no options"
                self.fail(f"unknown option {key!r} for {token.keyword}", kstart, self.i, help=hint)
            if key in found:
                self.fail(f"option {key!r} is given twice", kstart, self.i, help="keep one")
            if self.peek() != "=":
                self.fail(f"expected '=' after {key!r}", self.i, help=f"e.g. '{{{key}=...}}'")
            self.i += 1
            vstart = self.i
            while self.peek() != "" and self.peek() in _LETTERS + _DIGITS + ".":
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

    def check_args(self, token: _tokens.Token, args: list[Number], span: tuple[int, int]) -> None:
        if len(args) > len(token.args):
            if not token.args:
                self.fail(
                    f"{token.keyword} takes no numbers", *span, help=f"write '{token.keyword}'"
                )
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

    def run_validate(self, token: _tokens.Token, params: dict, span: tuple[int, int]) -> None:
        if token.validate is None:
            return
        try:
            token.validate(params)
        except _tokens.TokenProblem as problem:
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


def _same_slot(a: _tokens.Token | None, b: _tokens.Token) -> bool:
    """Whether two modifiers fill the same slot (two activations, two dropouts)."""
    return a is not None and (a.role == b.role if a.role != "custom" else a.keyword == b.keyword)
