"""The optional packages an export needs, imported on demand with an error that names them.

Converters and runtimes are optional dependencies (the ``export`` extra): a missing one is an
:class:`~kzoo.errors.ExportError` that says which pip package to install, raised before any
slow conversion starts.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kzoo.errors import ExportError, Hint

__all__ = ["EXTRA", "installed_version", "require"]

EXTRA = "export"


def require(module: str, package: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or explain how to install it.

    Args:
        module: The module to import, e.g. ``"onnxruntime"``.
        package: The pip package that provides it, e.g. ``"onnxruntime"``.
        purpose: What needs it, e.g. ``"verifying an ONNX export"``.

    Returns:
        The imported module.

    Raises:
        ExportError: The module is not installed (or fails to import).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ExportError(
            f"{purpose} needs the {package} package ({module} cannot be imported: {error})",
            hints=[
                Hint(
                    "install_package",
                    f'install it: pip install "kzoo[{EXTRA}]" (or pip install {package})',
                    {"package": package, "extra": EXTRA},
                )
            ],
        ) from error


def installed_version(module: ModuleType) -> str:
    """``"onnxruntime 1.22.0"``: a module's name and version, for reports."""
    name = module.__name__.split(".")[0]
    return f"{name} {getattr(module, '__version__', '')}".strip()
