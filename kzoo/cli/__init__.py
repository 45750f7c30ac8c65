"""The ``kzoo`` command line: the only part of kzoo that prints.

Each command group lives in its own module with a ``register(subparsers)`` function that adds
its sub-commands; a sub-command sets ``func(args) -> int``. Modules import Keras inside their
functions, never at the top, so that ``kzoo explain`` answers without importing Keras.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from kzoo.errors import KzooError

# command-group modules, in the order their commands are listed in --help
_GROUPS = ("kzoo.cli.dsl", "kzoo.cli.zoo", "kzoo.cli.transfer", "kzoo.cli.plot")


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every command group that is installed."""
    from kzoo import __version__

    parser = argparse.ArgumentParser(
        prog="kzoo",
        description="Keras models from architecture strings, a pretrained zoo, transfer learning.",
    )
    parser.add_argument("--version", action="version", version=f"kzoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what kzoo does")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _GROUPS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (0 success, 1 failure, 2 usage).

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The process exit status.
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="kzoo: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except KzooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
