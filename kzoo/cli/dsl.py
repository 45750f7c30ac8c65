"""``kzoo explain``, and the check that ``kzoo build`` runs first: pure Python, no Keras.

``kzoo explain`` never imports Keras, so it answers at once; a string ``kzoo build`` cannot
build fails here, pointing at the bad token, before the Keras import.
"""

from __future__ import annotations

import argparse

from kzoo.dsl import explain, plan

__all__ = ["check_spec", "run_explain"]


def run_explain(args: argparse.Namespace) -> int:
    """Print the table of :func:`kzoo.explain`."""
    print(explain(args.spec, args.input_shape, dialect=args.dialect, padding=args.padding))
    return 0


def check_spec(args: argparse.Namespace) -> None:
    """Plan the architecture (shapes included) as the build will; raises SpecError."""
    plan(args.spec, args.input_shape, dialect=args.dialect, padding=args.padding)
