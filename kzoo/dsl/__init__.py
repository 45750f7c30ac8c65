"""The architecture notation, in pure Python: parse, plan, explain, print back, extend.

>>> from kzoo.dsl import explain, parse
>>> parse("28x28x1:20C5-MP2-50C5-MP2-FC256-FC10").layers()[0].keyword
'C'

A spec goes ``parse`` (:mod:`.parser`, text -> :mod:`.ast` nodes with spans, residual and
branching groups as :class:`Block`) -> ``plan`` (:mod:`.planner`, a DAG of named steps with
shapes, parameters and inputs) -> :mod:`kzoo.builder` (Keras) or
``explain`` (:mod:`.explanation`, a table). :mod:`.tokens` is the registry of keywords;
:mod:`.builtin_tokens` fills it (importing this package does); :mod:`.writer` turns a Keras
model back into a string; :mod:`.architectures` holds the named specs. Nothing in this package
imports Keras.
"""

from __future__ import annotations

from kzoo.dsl import builtin_tokens as _builtin_tokens  # noqa: F401  (registers the built-ins)
from kzoo.dsl.architectures import ARCHITECTURES, get_architecture, list_architectures
from kzoo.dsl.ast import BLOCK_KINDS, MAX_DEPTH, MAX_LAYERS, Block, Group, Layer, Modifier, Spec
from kzoo.dsl.explanation import Explanation, Row, explain
from kzoo.dsl.parser import parse
from kzoo.dsl.planner import Plan, Step, plan
from kzoo.dsl.tokens import (
    ACTIVATIONS,
    ShapeProblem,
    Token,
    TokenProblem,
    get_token,
    keywords,
    register_token,
    scoped_tokens,
    unregister_token,
)
from kzoo.dsl.writer import to_string

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "BLOCK_KINDS",
    "MAX_DEPTH",
    "MAX_LAYERS",
    "Block",
    "Explanation",
    "Group",
    "Layer",
    "Modifier",
    "Plan",
    "Row",
    "ShapeProblem",
    "Spec",
    "Step",
    "Token",
    "TokenProblem",
    "explain",
    "get_architecture",
    "get_token",
    "keywords",
    "list_architectures",
    "parse",
    "plan",
    "register_token",
    "scoped_tokens",
    "to_string",
    "unregister_token",
]
