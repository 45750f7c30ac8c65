"""``kzoo explain`` and ``kzoo build``: architecture strings from the command line.

``kzoo explain`` never imports Keras, so it answers at once; ``kzoo build`` does.
"""

from __future__ import annotations

import argparse
import sys


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected positive integers joined by 'x' in Keras order, e.g. 224x224x3; got {text!r}"
        )
    return dims


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec", help="architecture string, e.g. '28x28x1:20C5-MP2-FC10', or a name like vgg19"
    )
    parser.add_argument(
        "--input-shape", type=_shape, metavar="HxWxC", help="input shape, e.g. 224x224x3"
    )
    parser.add_argument(
        "--dialect",
        choices=("keras", "ciresan"),
        help="'ciresan': valid convolutions, as the literature means them",
    )
    parser.add_argument("--padding", choices=("same", "valid"), default="same")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``explain`` and ``build``."""
    explain = subparsers.add_parser(
        "explain",
        help="per-layer output shapes and parameter counts of an architecture string",
        description="Print each layer's name, output shape and parameters (no Keras needed).",
    )
    _common(explain)
    explain.set_defaults(func=run_explain)

    build = subparsers.add_parser(
        "build",
        help="build a Keras model from an architecture string",
        description="Build the model, print its canonical string, optionally save it.",
    )
    _common(build)
    build.add_argument("--summary", action="store_true", help="print Keras's model summary")
    build.add_argument("--save", metavar="PATH", help="save the model, e.g. model.keras")
    build.set_defaults(func=run_build)


def run_explain(args: argparse.Namespace) -> int:
    """Print the table of :func:`kzoo.explain`."""
    from kzoo.dsl import explain

    print(explain(args.spec, args.input_shape, dialect=args.dialect, padding=args.padding))
    return 0


def run_build(args: argparse.Namespace) -> int:
    """Build the model; print its string and parameter count; save it if asked."""
    from kzoo.builder import build, to_string

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
