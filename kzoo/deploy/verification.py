"""Checking that an exported artifact computes what the Keras model computes.

:func:`verify_export` feeds the same deterministic RGB 0-255 images to the artifact, in its own
runtime, and to the model's float32 twin, and compares. The difference of an output value is
relative to the largest magnitude among that sample's outputs (``|a - k| / max_j |k_j|``), so
near-zero probabilities do not blow the ratio up and a saturated softmax is not excused either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import keras
import numpy as np

from kzoo.deploy.float32 import float32_twin
from kzoo.deploy.formats import Format, format_of, resolve_format
from kzoo.deploy.runtimes import Runtime, open_artifact
from kzoo.errors import ExportError

__all__ = [
    "Verification",
    "check_sampling",
    "check_single_io",
    "compare",
    "sample_images",
    "verify_export",
    "verify_runtime",
]

FREE_SIDE = 64  # what a free (None) image dimension becomes in the samples
_BATCH = 16  # samples per call, to bound the memory of a large model


@dataclass(frozen=True)
class Verification:
    """How closely an artifact reproduced the Keras model.

    Attributes:
        runtime: The runtime that ran the artifact, e.g. ``"onnxruntime 1.22.0"``.
        samples: How many images were compared.
        seed: The seed the images were drawn with.
        tolerance: The largest relative difference allowed.
        max_relative_difference: The largest ``|artifact - keras| / max |keras of that sample|``.
        max_absolute_difference: The largest ``|artifact - keras|``.
        where: Index of the largest relative difference: ``(sample, *output position)``.
        keras_value: The Keras float32 output there.
        artifact_value: The artifact's output there.
    """

    runtime: str
    samples: int
    seed: int
    tolerance: float
    max_relative_difference: float
    max_absolute_difference: float
    where: tuple[int, ...]
    keras_value: float
    artifact_value: float

    @property
    def passed(self) -> bool:
        """Whether the largest relative difference is within the tolerance."""
        return bool(self.max_relative_difference <= self.tolerance)

    def describe(self) -> str:
        """One line: the runtime, the samples and the largest difference against the tolerance."""
        verdict = "matches" if self.passed else "DIFFERS from"
        return (
            f"{self.runtime} {verdict} Keras (float32) on {self.samples} images: max relative "
            f"difference {self.max_relative_difference:.3g} (tolerance {self.tolerance:g})"
        )


def sample_images(shape: Sequence[int | None], samples: int, seed: int = 0) -> np.ndarray:
    """Deterministic RGB 0-255 images (whole numbers, float32) of one input shape.

    Args:
        shape: The input shape without the batch dimension; a None becomes 64.
        samples: How many images.
        seed: The NumPy generator seed.
    """
    dims = tuple(FREE_SIDE if d is None else int(d) for d in shape)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(samples, *dims)).astype(np.float32)


def compare(
    expected: np.ndarray, got: np.ndarray, *, runtime: str, tolerance: float, seed: int
) -> Verification:
    """The figures of a comparison of artifact outputs ``got`` with Keras's ``expected``."""
    expected = np.asarray(expected, np.float64)
    got = np.asarray(got, np.float64)
    if got.shape != expected.shape:
        raise ExportError(
            f"{runtime} returned outputs of shape {got.shape} where Keras returns {expected.shape}"
        )
    flat = expected.reshape(len(expected), -1)
    scale = np.maximum(np.abs(flat).max(axis=1), np.finfo(np.float32).tiny)
    absolute = np.abs(got - expected)
    relative = absolute / scale.reshape((-1,) + (1,) * (expected.ndim - 1))
    relative = np.where(np.isnan(got) & ~np.isnan(expected), np.inf, relative)
    relative = np.nan_to_num(relative, nan=0.0, posinf=np.inf)
    where = np.unravel_index(int(np.argmax(relative)), relative.shape)
    return Verification(
        runtime=runtime,
        samples=len(expected),
        seed=seed,
        tolerance=float(tolerance),
        max_relative_difference=float(relative[where]),
        max_absolute_difference=float(np.nan_to_num(absolute, nan=np.inf).max()),
        where=tuple(int(i) for i in where),
        keras_value=float(expected[where]),
        artifact_value=float(got[where]),
    )


def verify_runtime(
    runtime: Runtime, model: keras.Model, *, samples: int, tolerance: float, seed: int
) -> Verification:
    """Compare a loaded artifact with a float32 model; raise ExportError beyond the tolerance."""
    images = sample_images(model.inputs[0].shape[1:], samples, seed)
    expected, got = [], []
    for start in range(0, samples, _BATCH):
        batch = images[start : start + _BATCH]
        expected.append(keras.ops.convert_to_numpy(model(batch, training=False)))
        got.append(runtime.run(batch))
    result = compare(
        np.concatenate(expected), np.concatenate(got),
        runtime=runtime.name, tolerance=tolerance, seed=seed,
    )  # fmt: skip
    if not result.passed:
        sample, *position = result.where
        error = ExportError(
            f"the exported model computes otherwise than Keras: max relative "
            f"difference {result.max_relative_difference:.3g} > tolerance {tolerance:g} at "
            f"sample {sample}, output {tuple(position)}: {runtime.name} gives "
            f"{result.artifact_value:.9g}, Keras (float32) {result.keras_value:.9g} (images: "
            f"RGB 0-255, seed {seed})"
        )
        error.verification = result
        raise error
    return result


def verify_export(
    path: str | PathLike[str],
    model: keras.Model,
    format: str | None = None,
    *,
    samples: int = 16,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> Verification:
    """Load an exported artifact in its own runtime and check that it computes what Keras does.

    Args:
        path: The SavedModel directory, or the ``.onnx``/``.tflite``/``.xml`` file.
        model: The Keras model it was exported from (a mixed-precision model is compared
            through its float32 twin, as :func:`kzoo.deploy.export` writes it).
        format: The artifact's format; default: from the path's suffix.
        samples: How many deterministic RGB 0-255 images to compare on.
        tolerance: The largest relative difference allowed (see :class:`Verification`).
        seed: The images' seed.

    Returns:
        The :class:`Verification` figures.

    Raises:
        ExportError: The artifact differs beyond the tolerance (naming the value, where, and
            both numbers), cannot be loaded or run, or its runtime is not installed.
    """
    path = Path(path).expanduser()
    check_sampling(samples, tolerance)
    check_single_io(model)
    fmt: Format = format_of(path) if format is None else resolve_format(format, path, None)
    twin, _ = float32_twin(model)
    return verify_runtime(
        open_artifact(path, fmt), twin, samples=samples, tolerance=tolerance, seed=seed
    )


def check_sampling(samples: int, tolerance: float) -> None:
    """Reject a sample count below 1 or a negative tolerance."""
    if int(samples) < 1:
        raise ExportError(f"samples must be at least 1. Received: samples={samples!r}")
    if not tolerance >= 0:
        raise ExportError(f"tolerance must be 0 or more. Received: tolerance={tolerance!r}")


def check_single_io(model: keras.Model) -> None:
    """Reject a model without exactly one known input and one output."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ExportError(
            f"{model.name!r} has no known inputs: build it from keras.Input (a Functional or "
            "Sequential model with an input shape) before exporting it"
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(
            f"kzoo exports image models with one input and one output; {model.name!r} has "
            f"{len(inputs)} inputs and {len(outputs)} outputs"
        )
