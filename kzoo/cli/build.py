"""``kzoo build``: a Keras model from an architecture string (checked first by ``dsl``)."""

from __future__ import annotations

import argparse
import sys

from kzoo.builder import build
from kzoo.dsl import to_string

__all__ = ["run_build"]


def run_build(args: argparse.Namespace) -> int:
    """Build the model; print its string and parameter count; save it if asked."""
    model = build(args.spec, args.input_shape, dialect=args.dialect, padding=args.padding)
    if args.summary:
        model.summary(print_fn=print)
    print(to_string(model))
    print(f"{model.name}: {len(model.layers)} layers, {model.count_params():,} params")
    if args.save:
        try:
            model.save(args.save)
        except (ValueError, OSError) as error:
            print(f"error: cannot save to {args.save!r}: {error}", file=sys.stderr)
            return 1
        print(f"saved {args.save}")
    return 0
