"""Writing one artifact with Keras's exporters, the class names put where the format keeps them.

:func:`write_artifact` calls ``model.export`` (or, for a SavedModel, ``keras.export.ExportArchive``
so that a second function can return the class names), then stores the class names in the
artifact's metadata or beside it. A converter that cannot translate an op becomes an
:class:`~kzoo.errors.ExportError` naming the layer the op belongs to, found by the layer names
that TensorFlow, tf2onnx and the LiteRT converter put in their node names.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras

from kzoo.deploy.float32 import leaf_layers
from kzoo.deploy.formats import Format
from kzoo.deploy.requirements import require
from kzoo.errors import ExportError

__all__ = [
    "CLASS_NAMES_KEY",
    "OPENVINO_CLASS_NAMES",
    "culprit_layer",
    "input_signature",
    "labels_file",
    "write_artifact",
]

CLASS_NAMES_KEY = "class_names"  # the SavedModel function and the ONNX metadata key
OPENVINO_CLASS_NAMES = ["kzoo", "class_names"]  # the rt_info path in an OpenVINO IR


def labels_file(artifact: Path) -> Path:
    """``model.tflite`` -> ``model.labels.txt``: where a format without metadata keeps names."""
    return artifact.with_suffix(".labels.txt")


def input_signature(model: keras.Model) -> list[keras.InputSpec]:
    """The model's one input, batch size free, under the input's own name."""
    (tensor,) = model.inputs
    shape = (None, *tensor.shape[1:])
    return [keras.InputSpec(shape=shape, dtype=tensor.dtype, name=_name(tensor))]


def write_artifact(
    model: keras.Model, path: Path, fmt: Format, class_names: Sequence[str] | None
) -> list[Path]:
    """Write ``model`` as ``fmt`` at ``path``, with its class names.

    Args:
        model: A float32 model with one input and one output.
        path: Where the artifact goes (a directory for a SavedModel).
        fmt: The format.
        class_names: The names of the outputs, or None.

    Returns:
        The paths written, in the order to move them into place: a labels file beside the
        artifact and an OpenVINO model's ``.bin`` weights first, the main file (the SavedModel
        directory, ``.onnx``, ``.tflite`` or ``.xml``) last.

    Raises:
        ExportError: The converter failed (naming the layer whose op it cannot translate, when
            the error message names one).
    """
    try:
        if fmt.name == "tf_saved_model":
            _write_saved_model(model, path, class_names)
        else:
            with warnings.catch_warnings():
                # Keras's bundled tf2onnx probes `np.object`, which NumPy answers with a
                # FutureWarning the user can do nothing about
                warnings.filterwarnings("ignore", r".*np\.object", FutureWarning)
                model.export(
                    str(path), format=fmt.name, verbose=False,
                    input_signature=input_signature(model), **_export_options(fmt),
                )  # fmt: skip
        if fmt.name == "onnx":
            _finish_onnx(path, class_names)
        elif fmt.name == "openvino" and class_names is not None:
            _label_openvino(path, class_names)
    except ExportError:
        raise
    except Exception as error:
        raise conversion_error(model, fmt, error) from error
    # in the order to move them into place: the main file last, so that it completes the set
    written = []
    if fmt.side_file and class_names is not None:
        labels = labels_file(path)
        labels.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
        written.append(labels)
    if fmt.name == "openvino":
        written.append(path.with_suffix(".bin"))
    written.append(path)
    return written


def conversion_error(model: keras.Model, fmt: Format, error: BaseException) -> ExportError:
    """An ExportError for a failed conversion, naming the layer when the message shows one."""
    text = f"{type(error).__name__}: {error}"
    detail = _first_line(text)
    layer = culprit_layer(model, text)
    if layer is None:
        return ExportError(f"the {fmt.name} converter failed on {model.name!r}: {detail}")
    return ExportError(
        f"cannot export layer {layer.name!r} ({type(layer).__name__}) to {fmt.name}: the "
        f"converter cannot translate an op it computes ({detail}). Write the layer with ops "
        f"{fmt.name} supports, or export to another format"
    )


def culprit_layer(model: keras.Model, text: str) -> keras.layers.Layer | None:
    """The layer whose name appears as a scope (``.../name/Op``, or ``name_1/``) in ``text``.

    TensorFlow names every op by the layers it sits in, and the converters quote those names
    in their errors. An exact scope wins over one with a ``_N`` uniquifying suffix; among
    several, the first in the text.
    """
    layers = list(leaf_layers(model))
    for suffix in ("", r"(?:_\d+)?"):
        found = []
        for layer in layers:
            match = re.search(rf"(?<![\w.-]){re.escape(layer.name)}{suffix}/", text)
            if match:
                found.append((match.start(), layer))
        if found:
            return min(found, key=lambda hit: hit[0])[1]
    return None


def _write_saved_model(model: keras.Model, path: Path, class_names: Sequence[str] | None) -> None:
    tf = require("tensorflow", "tensorflow", "writing a SavedModel")
    archive = keras.export.ExportArchive()
    archive.track_and_add_endpoint("serve", model, input_signature(model))
    if class_names is not None:
        names = list(class_names)

        # A concrete tf.function with no inputs: the only endpoint kind ExportArchive accepts on
        # every backend (JAX converts anything else with jax2tf), and a signature TF Serving lists.
        @tf.function(input_signature=[])
        def class_names_fn():
            return tf.constant(names, dtype=tf.string)

        class_names_fn()
        archive.add_endpoint(CLASS_NAMES_KEY, class_names_fn)
    archive.write_out(str(path), verbose=False)


def _export_options(fmt: Format) -> dict:
    if fmt.name == "litert" and keras.backend.backend() == "tensorflow":
        tf = require("tensorflow", "tensorflow", "writing a LiteRT file")
        # Built-in ops only: the LiteRT runtime on PyPI has no TensorFlow-ops (Flex) delegate, so
        # a Flex op would convert here and fail on the phone; this way it fails now, named.
        return {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    return {}


def _finish_onnx(path: Path, class_names: Sequence[str] | None) -> None:
    onnx = require("onnx", "onnx", "writing an ONNX file")
    proto = onnx.load(str(path))
    # tf2onnx writes a file even when it could not translate an op (it only logs); the checker
    # refuses such a graph, and its message names the node, hence the layer.
    onnx.checker.check_model(proto)
    if class_names is None:
        return
    kept = [p for p in proto.metadata_props if p.key != CLASS_NAMES_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=CLASS_NAMES_KEY, value=json.dumps(list(class_names)))
    onnx.save(proto, str(path))


def _label_openvino(path: Path, class_names: Sequence[str]) -> None:
    ov = require("openvino", "openvino", "writing an OpenVINO model")
    ir = ov.Core().read_model(str(path))
    ir.set_rt_info(json.dumps(list(class_names)), OPENVINO_CLASS_NAMES)
    # beside, then over: the model read maps the .bin being replaced
    named = path.with_name(f"{path.stem}.named.xml")
    ov.serialize(ir, str(named))  # not save_model: that would compress the weights to float16
    del ir
    os.replace(named.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(named, path)


def _name(tensor: keras.KerasTensor) -> str:
    # a KerasTensor's name is its layer's, e.g. "image" for kzoo.transfer models
    return str(getattr(tensor, "name", "") or "input").split(":")[0]


def _first_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    wanted = next((line for line in lines if re.search(r"\bop\b|OpType|not supported", line)), "")
    line = wanted or (lines[0] if lines else text)
    return line if len(line) <= limit else line[: limit - 3] + "..."
