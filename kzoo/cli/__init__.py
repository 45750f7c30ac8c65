"""The ``kzoo`` command line: the only part of kzoo that prints.

:mod:`.commands` declares every command, its flags and the checks that run before it does
any work; each command's handler lives in the module of its group (:mod:`.dsl`, :mod:`.zoo`,
:mod:`.transfer`, :mod:`.plot`), imported only when that command runs. Errors carry their
fixes as data (:class:`kzoo.errors.Hint`); this module writes them as commands.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence

from kzoo import __version__
from kzoo.cli.commands import make_parser, run_checks
from kzoo.cli.quiet import quiet_tensorflow
from kzoo.errors import Hint, KzooError

__all__ = ["hint_line", "main"]

# How the command line words each kind of fix; other hints keep the library's text.
_HINT_COMMANDS: dict[str, Callable[[Mapping[str, str]], str]] = {
    "import_weights": lambda p: (
        f"install a copy you obtained elsewhere: kzoo weights import {p['model']} {p['tag']} FILE"
        + (" --notop" if p.get("variant") == "notop" else "")
    ),
    "use_installed": lambda p: (
        f"{p['name']} weights are installed: name the model {p['name']} to use them"
    ),
    "give_input_shape": lambda p: f"add --input-shape {p['example']}",
    "build_architecture": lambda p: (
        f"{p['name']!r} is a named architecture without pretrained weights: build it with "
        f"kzoo build {p['name']} --save {p['name']}.keras (kzoo models --architectures lists them)"
    ),
}


def hint_line(hint: Hint) -> str:
    """A hint as the command line says it."""
    render = _HINT_COMMANDS.get(hint.action)
    return render(hint.params) if render else hint.text


def _report(error: KzooError) -> None:
    prefix = getattr(error, "_hint_prefix", "fix: ")
    lines = [f"error: {error.message}", *(f"  {prefix}{hint_line(h)}" for h in error.hints)]
    print("\n".join(lines), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (0 success, 1 failure, 2 usage).

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The process exit status.
    """
    args = make_parser(__version__).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="kzoo: %(message)s"
    )
    try:
        run_checks(args)
        quiet_tensorflow()
        module, function = args.handler
        handler = getattr(importlib.import_module(f"kzoo.cli.{module}"), function)
        return int(handler(args) or 0)
    except KzooError as error:
        _report(error)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
