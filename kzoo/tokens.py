"""Deprecated alias of :mod:`kzoo.dsl.tokens`, where the token registry now lives.

``from kzoo.tokens import ShapeProblem`` keeps working, with a DeprecationWarning; write
``from kzoo.dsl.tokens import ShapeProblem`` (or ``from kzoo.dsl import ShapeProblem``).
"""

from __future__ import annotations

import warnings

from kzoo.dsl.tokens import *  # noqa: F403
from kzoo.dsl.tokens import __all__  # noqa: F401

warnings.warn(
    "kzoo.tokens moved to kzoo.dsl.tokens; import from there (or from kzoo.dsl).",
    DeprecationWarning,
    stacklevel=2,
)
