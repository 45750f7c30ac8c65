"""The export formats: their file names, converters per Keras backend, runtimes, label homes.

One table, :data:`FORMATS`, says for each format what kzoo needs to write it on each Keras
backend, which runtime verifies it, and where its class names go; :func:`resolve_format`
matches a requested format against the path's suffix and the current backend before anything
slow runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kzoo.errors import ExportError, Hint, UnknownNameError

__all__ = ["FORMATS", "Format", "format_of", "resolve_format"]

Package = tuple[str, str]  # (module to import, pip package that provides it)

TENSORFLOW: Package = ("tensorflow", "tensorflow")
ONNX: Package = ("onnx", "onnx")


@dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        name: The name Keras's ``model.export`` knows it by.
        suffix: The suffix the artifact's path must have; None for a directory.
        converters: Keras backend -> the packages writing the format on it needs. A backend
            missing from the mapping cannot write the format.
        runtime: The package that loads and runs the artifact for verification.
        labels: Where the class names go, in words (for docs and results).
        side_file: Whether the class names go to ``<stem>.labels.txt`` beside the artifact.
    """

    name: str
    suffix: str | None
    converters: Mapping[str, tuple[Package, ...]]
    runtime: Package
    labels: str
    side_file: bool = False
    refusal: Mapping[str, str] = field(default_factory=dict)  # backend -> why it cannot


FORMATS: dict[str, Format] = {
    "tf_saved_model": Format(
        name="tf_saved_model",
        suffix=None,
        converters={"tensorflow": (TENSORFLOW,), "jax": (TENSORFLOW,), "torch": (TENSORFLOW,)},
        runtime=TENSORFLOW,
        labels="the SavedModel's class_names() function (also a signature)",
    ),
    "onnx": Format(
        name="onnx",
        suffix=".onnx",
        converters={
            "tensorflow": (("tf2onnx", "tf2onnx"), ONNX),
            "jax": (("jax2onnx", "jax2onnx"), ONNX),
            "torch": (ONNX,),
        },
        runtime=("onnxruntime", "onnxruntime"),
        labels="the ONNX model's metadata_props['class_names'] (a JSON list)",
    ),
    "litert": Format(
        name="litert",
        suffix=".tflite",
        converters={"tensorflow": (TENSORFLOW,), "torch": (("litert_torch", "litert-torch"),)},
        runtime=("ai_edge_litert", "ai-edge-litert"),
        labels="<stem>.labels.txt beside the .tflite file, one name per line",
        side_file=True,
        refusal={"jax": "Keras writes LiteRT files only on the TensorFlow and torch backends"},
    ),
    "openvino": Format(
        name="openvino",
        suffix=".xml",
        converters={
            "tensorflow": (("openvino", "openvino"),),
            "torch": (("openvino", "openvino"),),
        },
        runtime=("openvino", "openvino"),
        labels="the IR's rt_info kzoo/class_names (a JSON list)",
        refusal={
            "jax": "Keras hands OpenVINO a jax2tf graph of XlaCallModule ops, which OpenVINO "
            "cannot convert",
        },
    ),
}

# a suffix that names a format: a path ending in it is that format's artifact
_BY_SUFFIX = {f.suffix: f.name for f in FORMATS.values() if f.suffix}
# files Keras and TensorFlow save models in: never an export artifact, nor a SavedModel folder
_MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5", ".pb")


def _refuse_model_file(path: Path, what: str) -> None:
    suffix = path.suffix.lower()
    if suffix in _MODEL_FILE_SUFFIXES:
        raise ExportError(
            f"{path} ends in {suffix}, a Keras or TensorFlow model file, not {what}; a "
            f"SavedModel is a folder ({path.with_suffix('')}), the other formats are files "
            f"ending in {', '.join(sorted(_BY_SUFFIX))}"
        )


def resolve_format(format: str | None, path: Path, backend: str | None) -> Format:
    """The format to write at ``path``: the one asked for, else the one its suffix names.

    Args:
        format: A name of :data:`FORMATS`, or None to take it from the path's suffix
            (``.onnx``, ``.tflite``, ``.xml``; anything else is a SavedModel directory).
        path: Where the artifact goes.
        backend: The Keras backend that will write it; None to check only the name and path
            (for an artifact that exists already).

    Returns:
        The format.

    Raises:
        UnknownNameError: An unknown format name.
        ExportError: The path's suffix names another format, the format needs a suffix the
            path lacks, or the backend cannot write the format.
    """
    named = _BY_SUFFIX.get(path.suffix.lower())
    if format is None:
        format = named or "tf_saved_model"
    if format not in FORMATS:
        raise UnknownNameError("export format", str(format), list(FORMATS))
    chosen = FORMATS[format]
    _refuse_model_file(path, "a place for an export")
    if named is not None and named != format:
        raise ExportError(
            f"{path} has the suffix of another format than {format}; give a path like "
            f"{_example(chosen, path)} or choose format={named!r}"
        )
    if chosen.suffix is not None and path.suffix.lower() != chosen.suffix:
        raise ExportError(
            f"a {format} artifact is a file ending in {chosen.suffix}. Received: {path}; "
            f"give a path like {_example(chosen, path)}"
        )
    if backend is not None and backend not in chosen.converters:
        why = chosen.refusal.get(backend, f"Keras cannot write {format} on the {backend} backend")
        able = " or ".join(chosen.converters)
        raise ExportError(
            f"cannot export to {format} on the {backend} Keras backend: {why}",
            hints=[
                Hint(
                    "choose_backend",
                    f"set KERAS_BACKEND={next(iter(chosen.converters))} (any of {able}) and "
                    "export from there, or choose another format",
                    {"backend": next(iter(chosen.converters))},
                )
            ],
        )
    return chosen


def format_of(path: Path) -> Format:
    """The format of an existing artifact, from its suffix (a directory is a SavedModel)."""
    _refuse_model_file(path, "an export artifact")
    return FORMATS[_BY_SUFFIX.get(path.suffix.lower(), "tf_saved_model")]


def _example(chosen: Format, path: Path) -> str:
    stem = path.with_suffix("") if path.suffix else path
    return str(stem.with_name(stem.name + chosen.suffix)) if chosen.suffix else str(stem)
