"""Package faces that import their modules on first use (PEP 562).

A face lists what it exports and where each name lives; :func:`lazy_exports` gives it the
module ``__getattr__`` and ``__dir__`` that import the home module when a name is first read.
Importing one module of a package then costs that module alone, not the whole package: the
zoo's manifest loads without the downloader, ``kzoo explain`` without Keras. Written by hand
because the standard library offers only the hook, not the lookup table.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a lazy package face.

    Args:
        package: The face's ``__name__``.
        exports: Public name -> ``"module:attribute"`` (a name defined in that module) or
            ``"module"`` (the module itself, for a sub-package or submodule).

    Returns:
        ``(__getattr__, __dir__)`` to assign at the face's module level.
    """

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = target.partition(":")
        value = importlib.import_module(module_name)
        if attribute:
            value = getattr(value, attribute)
        setattr(sys.modules[package], name, value)  # the next read skips this hook
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
