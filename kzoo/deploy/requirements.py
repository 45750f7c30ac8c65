"""The optional packages an export needs, imported on demand with an error that names them.

Converters and runtimes are optional dependencies (the ``export`` and ``openvino`` extras): a
missing one is an :class:`~kzoo.errors.ExportError` that says which pip package (and kzoo
extra) to install, raised before any slow conversion starts.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kzoo.errors import ExportError, Hint

__all__ = ["EXTRA", "EXTRA_OF", "installed_version", "require"]

EXTRA = "export"

# the kzoo extra that installs each pip package (pyproject.toml; a test keeps them in step);
# jax2onnx and litert-torch are in none: kzoo's converters run on the TensorFlow backend
EXTRA_OF = {
    "tensorflow": EXTRA,
    "tf2onnx": EXTRA,
    "onnx": EXTRA,
    "onnxruntime": EXTRA,
    "ai-edge-litert": EXTRA,
    "openvino": "openvino",
}


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
        extra = EXTRA_OF.get(package)
        fix = f'pip install "kzoo[{extra}]" (or pip install {package})' if extra else None
        raise ExportError(
            f"{purpose} needs the {package} package ({module} cannot be imported: {error})",
            hints=[
                Hint(
                    "install_package",
                    f"install it: {fix or f'pip install {package}'}",
                    {"package": package, "extra": extra},
                )
            ],
        ) from error


def installed_version(module: ModuleType) -> str:
    """``"onnxruntime 1.22.0"``: a module's name and version, for reports."""
    name = module.__name__.split(".")[0]
    return f"{name} {getattr(module, '__version__', '')}".strip()
