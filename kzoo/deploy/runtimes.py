"""Loading an exported artifact in the runtime it was written for, running it, reading its labels.

Each format has its own runtime: ``tf.saved_model.load``, ``onnxruntime.InferenceSession``, the
LiteRT interpreter (``ai_edge_litert``) and OpenVINO's CPU plugin. :func:`open_artifact` gives
a :class:`Runtime` with one ``run(images) -> outputs`` and ``class_names()``, so verification
and the tests treat them all alike. Failures to load or run become
:class:`~kzoo.errors.ExportError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kzoo.deploy.formats import Format
from kzoo.deploy.requirements import installed_version, require
from kzoo.deploy.writers import CLASS_NAMES_KEY, OPENVINO_CLASS_NAMES, labels_file
from kzoo.errors import ExportError

__all__ = ["Runtime", "open_artifact"]


class Runtime:
    """An artifact loaded in its runtime.

    Attributes:
        path: The artifact.
        name: The runtime and its version, e.g. ``"onnxruntime 1.22.0"``.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name

    def run(self, images: np.ndarray) -> np.ndarray:
        """The artifact's output for a batch of images, as float32 NumPy."""
        raise NotImplementedError

    def class_names(self) -> list[str] | None:
        """The class names the artifact carries (or its labels file holds), else None."""
        labels = labels_file(self.path)
        if not labels.is_file():
            return None
        return [line for line in labels.read_text(encoding="utf-8").splitlines() if line]

    def _fail(self, what: str, error: BaseException) -> ExportError:
        return ExportError(
            f"{self.name} cannot {what} the exported model: "
            f"{type(error).__name__}: {_shorten(str(error))}"
        )


class _SavedModel(Runtime):
    def __init__(self, path: Path) -> None:
        self._tf = require("tensorflow", "tensorflow", "loading a SavedModel")
        super().__init__(path, installed_version(self._tf))
        try:
            self._loaded = self._tf.saved_model.load(str(path))
        except Exception as error:
            raise self._fail("load", error) from error
        if not hasattr(self._loaded, "serve"):
            raise ExportError(f"{path} is a SavedModel without the serve() function Keras writes")

    def run(self, images: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._loaded.serve(self._tf.constant(images)), np.float32)
        except Exception as error:
            raise self._fail("run", error) from error

    def class_names(self) -> list[str] | None:
        function = getattr(self._loaded, CLASS_NAMES_KEY, None)
        if function is None:
            return None
        return [name.decode("utf-8") for name in function().numpy().tolist()]


class _Onnx(Runtime):
    def __init__(self, path: Path) -> None:
        ort = require("onnxruntime", "onnxruntime", "running an ONNX model")
        super().__init__(path, installed_version(ort))
        try:
            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:
            raise self._fail("load", error) from error
        self._input = self._session.get_inputs()[0].name

    def run(self, images: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._session.run(None, {self._input: images})[0], np.float32)
        except Exception as error:
            raise self._fail("run", error) from error

    def class_names(self) -> list[str] | None:
        metadata = self._session.get_modelmeta().custom_metadata_map
        return json.loads(metadata[CLASS_NAMES_KEY]) if CLASS_NAMES_KEY in metadata else None


class _LiteRT(Runtime):
    def __init__(self, path: Path) -> None:
        litert = require("ai_edge_litert.interpreter", "ai-edge-litert", "running a LiteRT model")
        version = installed_version(require("ai_edge_litert", "ai-edge-litert", "LiteRT"))
        super().__init__(path, version)
        try:
            self._interpreter = litert.Interpreter(model_path=str(path))
        except Exception as error:
            raise self._fail("load", error) from error

    def run(self, images: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter
        try:
            (source,) = interpreter.get_input_details()
            # the file keeps a batch of 1 with a free batch dimension: resize to the batch
            interpreter.resize_tensor_input(source["index"], list(images.shape), strict=False)
            interpreter.allocate_tensors()
            interpreter.set_tensor(source["index"], images.astype(source["dtype"]))
            interpreter.invoke()
            target = interpreter.get_output_details()[0]
            return np.array(interpreter.get_tensor(target["index"]), np.float32)
        except Exception as error:
            raise self._fail("run", error) from error


class _OpenVINO(Runtime):
    def __init__(self, path: Path) -> None:
        ov = require("openvino", "openvino", "running an OpenVINO model")
        super().__init__(path, installed_version(ov))
        core = ov.Core()
        try:
            self._model = core.read_model(str(path))
            # The CPU plugin defaults to bfloat16 on CPUs that have it: ask for what was exported.
            self._compiled = core.compile_model(
                self._model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
            )
        except Exception as error:
            raise self._fail("load", error) from error

    def run(self, images: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._compiled([images])[self._compiled.output(0)], np.float32)
        except Exception as error:
            raise self._fail("run", error) from error

    def class_names(self) -> list[str] | None:
        if not self._model.has_rt_info(OPENVINO_CLASS_NAMES):
            return None
        return json.loads(str(self._model.get_rt_info(OPENVINO_CLASS_NAMES).astype(str)))


_RUNTIMES: dict[str, Any] = {
    "tf_saved_model": _SavedModel,
    "onnx": _Onnx,
    "litert": _LiteRT,
    "openvino": _OpenVINO,
}


def open_artifact(path: Path, fmt: Format) -> Runtime:
    """Load an artifact in its format's runtime.

    Args:
        path: The SavedModel directory, or the ``.onnx``/``.tflite``/``.xml`` file.
        fmt: Its format.

    Returns:
        The loaded :class:`Runtime`.

    Raises:
        ExportError: The runtime is not installed, or cannot load the artifact.
    """
    if not path.exists():
        raise ExportError(f"no {fmt.name} artifact at {path}")
    return _RUNTIMES[fmt.name](path)


def _shorten(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
