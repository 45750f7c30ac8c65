"""The ``kzoo`` command line: the only part of kzoo that prints.

:mod:`.commands` declares every command, its flags and the checks that run before it does
any work; each command's handler lives in the module of its group (:mod:`.dsl`, :mod:`.zoo`,
:mod:`.transfer`, :mod:`.plot`), imported only when that command runs. Errors carry their
fixes as data (:class:`kzoo.errors.Hint`); this module writes them as commands.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence

from kzoo import __version__
from kzoo.cli.commands import make_parser, run_checks
from kzoo.errors import Hint, KzooError
from kzoo.lazy import on_first_import

__all__ = ["hint_line", "main"]

# How the command line words each kind of fix; other hints keep the library's text.
_HINT_COMMANDS: dict[str, Callable[[Mapping[str, str]], str]] = {
    "import_weights": lambda p: (
        f"install a copy you obtained elsewhere: kzoo weights import {p['model']} {p['tag']} FILE"
        + (" --notop" if p.get("variant") == "notop" else "")
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


@contextlib.contextmanager
def _tensorflow_quietly() -> Iterator[None]:
    """Around TensorFlow's first import: hold back what its native libraries print.

    They write about eight lines to file descriptor 2 (oneDNN, CUDA probing, absl) while they
    load and probe devices, before any log level applies: noise on every command. The lines
    are replayed if the import fails.
    """
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            sys.modules["tensorflow"].config.list_physical_devices()  # the CUDA probe, now
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.flush()
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up and INFO/WARNING logs off the terminal, unless asked for."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return  # the user chose a log level: show what it lets through
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    on_first_import("tensorflow", _tensorflow_quietly)


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
        _quiet_tensorflow()
        module, function = args.handler
        handler = getattr(importlib.import_module(f"kzoo.cli.{module}"), function)
        return int(handler(args) or 0)
    except KzooError as error:
        _report(error)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
