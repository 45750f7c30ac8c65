"""kzoo: Keras 3 models from a one-line architecture string, a pretrained zoo, transfer learning.

>>> import kzoo
>>> model = kzoo.build("20C5-MP2-50C5-MP2-FC256-FC10", input_shape=(28, 28, 1))
>>> kzoo.explain("28x28x1:20C5-MP2-50C5-MP2-FC256-FC10")  # pure Python, no Keras import

The public names below are imported on first use, so ``import kzoo`` stays fast and
``kzoo explain`` never imports Keras. kzoo's Keras layers register themselves as soon as Keras
is imported, so ``keras.saving.load_model`` can reload models that use them after ``import kzoo``.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator

from kzoo.backend import require_backend
from kzoo.errors import (
    BackendError,
    ChecksumError,
    ConversionError,
    DownloadError,
    EntryNotFoundError,
    ExportError,
    GatedRepoError,
    Hint,
    HubError,
    ImageError,
    KzooError,
    ManifestError,
    OfflineError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SpecError,
    TrainingError,
    TransferError,
    UnknownNameError,
    UnsafePickleError,
)
from kzoo.lazy import lazy_exports, on_first_import

__version__ = "0.1.0"

# public name -> module that defines it; imported on first attribute access (PEP 562)
_LAZY: dict[str, str] = {
    "OneCycle": "kzoo.layers",
    "TrainingDiagnostics": "kzoo.diagnostics",
    "Transfer": "kzoo.transfer_learning",
    "balanced_class_weight": "kzoo.loop",
    "build": "kzoo.builder",
    "calibrate": "kzoo.loop",
    "calibration_error": "kzoo.loop",
    "check_images": "kzoo.datacheck",
    "decode_predictions": "kzoo.zoo",
    "explain": "kzoo.dsl",
    "export": "kzoo.deploy",
    "features": "kzoo.zoo",
    "fool": "kzoo.input_optimization",
    "initialize_processes": "kzoo.transfer_learning",
    "interpret": "kzoo.loop",
    "list_architectures": "kzoo.dsl",
    "list_models": "kzoo.zoo",
    "load": "kzoo.zoo",
    "lr_find": "kzoo.loop",
    "parse": "kzoo.dsl",
    "predict_tta": "kzoo.loop",
    "preprocess_input": "kzoo.zoo",
    "register_token": "kzoo.dsl",
    "scoped_tokens": "kzoo.dsl",
    "stylize": "kzoo.input_optimization",
    "to_string": "kzoo.dsl",
    "transfer": "kzoo.transfer_learning",
}
_SUBMODULES = ("datasets", "diagnostics", "layers", "loop", "losses", "plots", "report", "zoo")

__all__ = [
    "BackendError",
    "ChecksumError",
    "ConversionError",
    "DownloadError",
    "EntryNotFoundError",
    "ExportError",
    "GatedRepoError",
    "Hint",
    "HubError",
    "ImageError",
    "KzooError",
    "ManifestError",
    "OfflineError",
    "OneCycle",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "SpecError",
    "TrainingDiagnostics",
    "TrainingError",
    "Transfer",
    "TransferError",
    "UnknownNameError",
    "UnsafePickleError",
    "__version__",
    "balanced_class_weight",
    "build",
    "calibrate",
    "calibration_error",
    "check_images",
    "datasets",
    "decode_predictions",
    "diagnostics",
    "explain",
    "export",
    "features",
    "fool",
    "initialize_processes",
    "interpret",
    "layers",
    "list_architectures",
    "list_models",
    "load",
    "loop",
    "losses",
    "lr_find",
    "parse",
    "plots",
    "predict_tta",
    "preprocess_input",
    "register_token",
    "report",
    "scoped_tokens",
    "stylize",
    "to_string",
    "transfer",
    "zoo",
]


__getattr__, _dir = lazy_exports(
    __name__,
    {
        **{name: f"{module}:{name}" for name, module in _LAZY.items()},
        **{name: f"kzoo.{name}" for name in _SUBMODULES},
    },
)


def __dir__() -> list[str]:
    return __all__


@contextlib.contextmanager
def _keras_with_kzoo_layers() -> Iterator[None]:
    """Around Keras's first import: a clear error without a backend; then kzoo's layers.

    Keras only deserializes classes that are registered, so kzoo's layers must be registered
    before a saved model is loaded, whoever imports Keras; importing Keras eagerly instead
    would cost every ``kzoo explain`` several seconds.
    """
    require_backend()  # a missing backend: one clear error instead of Keras's traceback
    yield
    _register()


def _register() -> None:
    for module in _REGISTERED:
        importlib.import_module(module)


# the modules whose import registers kzoo's serializable Keras objects
_REGISTERED = ("kzoo.layers", "kzoo.losses")

if "keras" in sys.modules:
    _register()
else:
    on_first_import("keras", _keras_with_kzoo_layers)
