"""Import-time machinery: package faces that import on first use, and first-import hooks.

* :func:`lazy_exports` - a face lists what it exports and where each name lives, and gets the
  module ``__getattr__`` and ``__dir__`` (PEP 562) that import the home module when a name is
  first read. Importing one module of a package then costs that module alone: the zoo's
  manifest loads without the downloader, ``kzoo explain`` without Keras.
* :func:`on_first_import` - run code around the first import of another module, whoever
  imports it: kzoo registers its Keras layers right after Keras loads, and the command line
  holds back what TensorFlow's native libraries print while they load.

Written by hand because the standard library offers only the hooks, not these two uses.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["lazy_exports", "on_first_import"]


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


Around = Callable[[], AbstractContextManager[Any]]


def on_first_import(name: str, around: Around) -> None:
    """Run the first import of module ``name`` inside ``around()``, whoever imports it.

    Args:
        name: A top-level module name (``"keras"``).
        around: A context manager factory: its enter runs before the module's code, its exit
            after it (an exception in either fails the import).

    Does nothing when ``name`` is already imported or already hooked for the same ``around``.
    """
    if name in sys.modules:
        return
    if any(isinstance(f, _FirstImport) and f.key == (name, around) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _FirstImport(name, around))


class _FirstImport:
    """A one-shot meta path finder handing ``name``'s loader to :class:`_Around`.

    A finder only needs ``find_spec``; skipping importlib.abc keeps ``import kzoo`` light.
    """

    def __init__(self, name: str, around: Around) -> None:
        self.key = (name, around)
        self.looking = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        name, around = self.key
        if fullname != name or self.looking:
            return None
        # Stays hooked until the module really loads: a mere importlib.util.find_spec (a
        # backend check, say) must not use the hook up.
        self.looking = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.looking = False
        if spec is not None and spec.loader is not None:
            spec.loader = _Around(spec.loader, around, self)
        return spec


class _Around:
    def __init__(self, loader: Any, around: Around, hook: _FirstImport) -> None:
        self._loader, self._around, self._hook = loader, around, hook

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        if self._hook in sys.meta_path:
            sys.meta_path.remove(self._hook)  # one-shot
        try:
            with self._around():
                self._loader.exec_module(module)
        except BaseException:
            sys.meta_path.insert(0, self._hook)  # the import failed: the next try is hooked too
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
