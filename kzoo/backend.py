"""Which Keras backend is configured, and a clear error when it is not installed.

``pip install kzoo`` alone installs Keras but no backend; Keras then fails on its first import
with a long traceback ending in ``No module named 'tensorflow'``. :func:`require_backend` finds
the configured backend (``KERAS_BACKEND``, else ``keras.json``, else TensorFlow, as Keras
does) without importing anything and raises :class:`~kzoo.errors.BackendError` naming the
extra to install. ``import kzoo`` runs it just before Keras is first imported, and
:func:`kzoo.load` runs it before any download. :func:`dtype_policy_scope` sets Keras's global
dtype policy for a block. Pure Python at import: Keras is imported only when a scope opens.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator

from kzoo.errors import BackendError, Hint

__all__ = ["configured_backend", "dtype_policy_scope", "require_backend"]

# backend -> the module Keras imports for it
_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
            "openvino": "openvino"}  # fmt: skip
_EXTRAS = ("tensorflow", "jax", "torch")


def configured_backend() -> str:
    """The backend Keras will use: ``KERAS_BACKEND``, else ``keras.json``'s, else tensorflow."""
    name = os.environ.get("KERAS_BACKEND", "").strip()
    if name:
        return name
    import json  # here, not at the top: import kzoo imports this module and must stay instant

    home = os.environ.get("KERAS_HOME") or os.path.expanduser(os.path.join("~", ".keras"))
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as handle:
            return str(json.load(handle).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def require_backend() -> None:
    """Raise BackendError when the configured Keras backend is not installed.

    Costs one module lookup; nothing is imported.

    Raises:
        BackendError: Naming the backend, where it was chosen, and what to install.
    """
    name = configured_backend()
    module = _MODULES.get(name)
    if module is None or importlib.util.find_spec(module) is not None:
        return  # an unknown name is Keras's to report; an installed backend is fine
    chosen = "by KERAS_BACKEND" if os.environ.get("KERAS_BACKEND", "").strip() else "the default"
    install = f'pip install "kzoo[{name}]"' if name in _EXTRAS else f"pip install {module}"
    others = " or ".join(f'"kzoo[{e}]"' for e in _EXTRAS if e != name)
    raise BackendError(
        f"Keras is set to the {name} backend ({chosen}), but {module} is not installed, so "
        "kzoo cannot build or load a model.",
        hints=[
            Hint("install_backend", f"install it: {install}", {"backend": name}),
            Hint("choose_backend", f"or install {others} and set KERAS_BACKEND to match"),
        ],
    )


@contextlib.contextmanager
def dtype_policy_scope(name: str) -> Iterator[None]:
    """Keras's global dtype policy set to ``name`` inside the block, restored after it.

    Layers created inside (and layers rebuilt from configs without a dtype) take ``name``.
    """
    import keras  # here: import kzoo imports this module before Keras and must stay instant

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
