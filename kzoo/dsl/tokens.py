"""The token registry: what each keyword of the architecture notation means.

A token declares its surface syntax (a leading count such as the ``64`` of ``64C3``, numbers
after the keyword, one-letter flags such as ``s2`` or ``v``, the ``{k=v}`` keys it accepts), how
to infer its output shape and parameter count in pure Python, and which Keras layer it becomes:
a ``keras.layers`` class name (data, read by :mod:`kzoo.builder`) for the built-in tokens, a
``build`` function for user tokens. The registry knows no token itself:
:mod:`kzoo.dsl.builtin_tokens` declares the built-in ones through the same path users take,
so a user token gets parsing, error messages, suggestions and printing with no extra code::

    import kzoo, keras

    def build(p):
        return keras.layers.GroupNormalization(groups=p["groups"], name=p["name"])

    def shape(input_shape, p):
        return input_shape, 2 * input_shape[-1]

    with kzoo.scoped_tokens():
        kzoo.register_token("GN", build=build, shape=shape, args=("groups",))
        model = kzoo.build("16C3-GN4-MP2-FC10", input_shape=(28, 28, 1))

Pure Python: nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "ShapeProblem",
    "Token",
    "TokenProblem",
    "get_token",
    "keywords",
    "register_builtin",
    "register_token",
    "scoped_tokens",
    "unregister_token",
]

# roles the planner knows; a user token is always "custom"
ROLES = (
    "conv",
    "dense",
    "pool",
    "pad",
    "merge",
    "global_pool",
    "flatten",
    "batchnorm",
    "dropout",
    "activation",
    "custom",
)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "softmax", "elu", "selu", "gelu", "swish")
_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z_]*$")


class TokenProblem(Exception):
    """Raised by a token's ``validate`` hook: the values written are not acceptable.

    Args:
        reason: What is wrong, e.g. ``"dropout rate 50 is not in [0, 1)"``.
        help: A suggestion, e.g. ``"did you mean 'D0.5'?"``.
    """

    def __init__(self, reason: str, help: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.help = help


class ShapeProblem(TokenProblem):
    """Raised by a token's ``shape`` rule: the layer cannot take this input.

    The reason is a predicate that follows the token and its column, e.g. ``"reduces 2x2 to
    0x0"`` becomes ``"MP3 at column 27 reduces 2x2 to 0x0"``.
    """


Shape = tuple[Any, ...]
ShapeRule = Callable[[Shape, Mapping[str, Any]], tuple[Shape, int]]
BuildFn = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Token:
    """One keyword of the notation.

    Attributes:
        keyword: The keyword as written, e.g. ``"C"``, ``"FC"``, ``"relu"``.
        build: ``build(params) -> keras layer`` for a user token; ``params`` holds the declared
            names plus ``name``. None for built-in tokens, which name ``keras_class``.
        shape: ``shape(input_shape, params) -> (output_shape, n_params)`` in pure Python
            (``None`` for unknown sizes); raise :class:`ShapeProblem` for an impossible input.
        count: Name of the leading integer (``"filters"`` for ``64C3``), or None if not allowed.
        count_required: Whether the leading integer must be written.
        args: Names of the numbers after the keyword, in order.
        min_args: How many of ``args`` must be written.
        flags: One-letter flags: letter -> (name, int or bool); ``s2`` is an int flag, ``v`` a bool.
        kwargs: Keys accepted in ``{k=v}``.
        role: How the builder treats it (naming, BN, head); ``"custom"`` for user tokens.
        modifier: Whether it may be attached with ``+`` (``+BN``, ``+D0.5``, ``+relu``).
        alias_of: Keyword this one is printed as (``N`` -> ``FC``); its count becomes the first arg.
        validate: Optional ``validate(params)`` raising :class:`TokenProblem`.
        doc: One line for the token table.
        write: Optional ``write(keras_layer) -> str | None`` for :func:`kzoo.to_string`: the
            token text for a layer this token builds (``"GN4"``), None for other layers.
        keras_class: The ``keras.layers`` class a built-in token becomes (``"Conv2D"``); the
            planned parameters are its constructor's arguments.
    """

    keyword: str
    build: BuildFn | None
    shape: ShapeRule
    count: str | None = None
    count_required: bool = False
    args: tuple[str, ...] = ()
    min_args: int = 0
    flags: Mapping[str, tuple[str, type]] = field(default_factory=dict)
    kwargs: tuple[str, ...] = ()
    role: str = "custom"
    modifier: bool = False
    alias_of: str | None = None
    validate: Callable[[Mapping[str, Any]], None] | None = None
    doc: str = ""
    write: Callable[[Any], str | None] | None = None
    keras_class: str | None = None

    def params(
        self,
        count: int | None,
        args: Sequence[float],
        flags: Mapping[str, Any],
        kwargs: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Name the values written in a spec, with declared defaults (None / False)."""
        out: dict[str, Any] = {}
        if self.count:
            out[self.count] = count
        for i, name in enumerate(self.args):
            out[name] = args[i] if i < len(args) else None
        for letter, (name, kind) in self.flags.items():
            out[name] = flags.get(letter, False if kind is bool else None)
        out.update(kwargs)
        return out


_builtin: set[str] = set()
_registry: dict[str, Token] = {}


def register_token(
    keyword: str,
    *,
    build: BuildFn,
    shape: ShapeRule,
    count: str | None = None,
    count_required: bool = False,
    args: Sequence[str] = (),
    min_args: int | None = None,
    flags: Mapping[str, tuple[str, type]] | None = None,
    kwargs: Sequence[str] = (),
    modifier: bool = False,
    validate: Callable[[Mapping[str, Any]], None] | None = None,
    doc: str = "",
    write: Callable[[Any], str | None] | None = None,
    role: str = "custom",
    alias_of: str | None = None,
) -> Token:
    """Add a keyword to the notation.

    Args:
        keyword: Letters only (``"GN"``); must not collide with a registered keyword.
        build: ``build(params) -> keras layer``. ``params`` maps each declared count/arg/flag/
            kwarg name to its value and ``"name"`` to the layer name to use.
        shape: ``shape(input_shape, params) -> (output_shape, n_params)``, pure Python.
        count: Name for a leading integer (``"filters"`` in ``64C3``), if the token takes one.
        count_required: Whether that leading integer is mandatory.
        args: Names of the numbers written after the keyword (``GN4`` -> ``("groups",)``).
        min_args: How many args are mandatory (default: all of them).
        flags: One-letter lowercase flags, letter -> (name, ``int`` or ``bool``).
        kwargs: Keys accepted in ``{k=v}``.
        modifier: Whether ``+KEYWORD`` may attach it to another layer.
        validate: Optional hook raising :class:`TokenProblem` for bad values.
        doc: One line of documentation.
        write: Optional ``write(keras_layer) -> str | None`` so :func:`kzoo.to_string` can
            print layers this token built (return None for layers that are not yours).
        role: Built-in roles only; leave as ``"custom"``.
        alias_of: Built-in aliases only.

    Returns:
        The registered :class:`Token`.

    Raises:
        ValueError: For a malformed declaration or a keyword that is already registered.
    """
    _check_keyword(keyword)
    if keyword in _registry:
        raise ValueError(
            f"Token {keyword!r} is already registered; pick another keyword or remove it first "
            f"with kzoo.dsl.unregister_token({keyword!r}). Received: keyword={keyword!r}"
        )
    if not callable(build):
        raise ValueError(f"Token {keyword!r} needs a callable build function.")
    return _add(
        keyword=keyword,
        build=build,
        shape=shape,
        count=count,
        count_required=count_required,
        args=args,
        min_args=min_args,
        flags=flags,
        kwargs=kwargs,
        role=role,
        modifier=modifier,
        alias_of=alias_of,
        validate=validate,
        doc=doc,
        write=write,
    )


def register_builtin(keyword: str, *, keras_class: str, **declaration: Any) -> Token:
    """Add a built-in token: one that becomes ``keras.layers.<keras_class>`` and stays.

    Used by :mod:`kzoo.dsl.builtin_tokens`; takes the arguments of :func:`register_token`
    (without ``build``), checked the same way.
    """
    _check_keyword(keyword)
    if keyword in _registry:
        raise ValueError(f"Token {keyword!r} is already registered. Received: keyword={keyword!r}")
    token = _add(keyword=keyword, build=None, keras_class=keras_class, **declaration)
    _builtin.add(keyword)
    return token


def _add(
    *,
    keyword: str,
    build: BuildFn | None,
    shape: ShapeRule,
    count: str | None = None,
    count_required: bool = False,
    args: Sequence[str] = (),
    min_args: int | None = None,
    flags: Mapping[str, tuple[str, type]] | None = None,
    kwargs: Sequence[str] = (),
    role: str = "custom",
    modifier: bool = False,
    alias_of: str | None = None,
    validate: Callable[[Mapping[str, Any]], None] | None = None,
    doc: str = "",
    write: Callable[[Any], str | None] | None = None,
    keras_class: str | None = None,
) -> Token:
    if role not in ROLES:
        raise ValueError(f"Unknown token role. Expected one of {ROLES}. Received: role={role!r}")
    flags = dict(flags or {})
    for letter, spec in flags.items():
        if len(letter) != 1 or not letter.islower() or letter == "x":
            raise ValueError(
                f"Flags are single lowercase letters other than 'x' (the repeat sign). "
                f"Received: flag {letter!r}"
            )
        if not (isinstance(spec, tuple) and len(spec) == 2 and spec[1] in (int, bool)):
            raise ValueError(
                f"A flag maps to (name, int) or (name, bool). Received: {letter!r}: {spec!r}"
            )
    if not callable(shape):
        raise ValueError(f"Token {keyword!r} needs a callable shape function.")
    args = tuple(args)
    token = Token(
        keyword=keyword,
        build=build,
        shape=shape,
        count=count,
        count_required=count_required,
        args=args,
        min_args=len(args) if min_args is None else min_args,
        flags=flags,
        kwargs=tuple(kwargs),
        role=role,
        modifier=modifier,
        alias_of=alias_of,
        validate=validate,
        doc=doc,
        write=write,
        keras_class=keras_class,
    )
    _registry[keyword] = token
    return token


def _check_keyword(keyword: Any) -> None:
    if not isinstance(keyword, str) or not _KEYWORD.match(keyword):
        raise ValueError(
            f"A token keyword must be letters (and underscores), like 'GN'. Received: {keyword!r}"
        )


def unregister_token(keyword: str) -> None:
    """Remove a user token (built-in tokens cannot be removed).

    Raises:
        ValueError: If ``keyword`` is built in or not registered.
    """
    if keyword in _builtin:
        raise ValueError(f"Token {keyword!r} is built in and cannot be removed.")
    if keyword not in _registry:
        raise ValueError(f"Token {keyword!r} is not registered. Received: {keyword!r}")
    del _registry[keyword]


@contextlib.contextmanager
def scoped_tokens() -> Iterator[None]:
    """A context in which registered tokens are forgotten on exit (keeps tests hermetic)."""
    saved = dict(_registry)
    try:
        yield
    finally:
        _registry.clear()
        _registry.update(saved)


def get_token(keyword: str) -> Token | None:
    """The token registered for ``keyword``, or None."""
    return _registry.get(keyword)


def keywords() -> list[str]:
    """Every registered keyword."""
    return list(_registry)
