"""Exporting a model for serving: float32, class names inside, verified, written all or nothing.

:func:`export` checks everything cheap first (format, path, class names, installed packages),
re-creates a mixed-precision model in float32, writes the artifact into a staging folder beside
``path``, loads it back in its own runtime and compares it with Keras, and only then moves it
into place. A failure at any step leaves nothing at ``path`` and no staging folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import keras

from kzoo.deploy.float32 import float32_twin
from kzoo.deploy.formats import Format, format_of, resolve_format
from kzoo.deploy.requirements import require
from kzoo.deploy.runtimes import open_artifact
from kzoo.deploy.verification import (
    Verification,
    check_sampling,
    check_single_io,
    verify_runtime,
)
from kzoo.deploy.writers import labels_file, write_artifact
from kzoo.errors import ExportError

__all__ = ["ExportResult", "export", "read_class_names"]


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote.

    Attributes:
        path: The artifact: a SavedModel directory, or the ``.onnx``/``.tflite``/``.xml`` file.
        format: The format written.
        files: Every path written (the artifact, an OpenVINO ``.bin``, a labels file).
        class_names: The class names carried, or None.
        class_names_location: Where they are, in words; None without class names.
        verification: The comparison with Keras, or None when ``verify=False``.
        recreated_in_float32: Whether the model was rebuilt in float32 first (it was trained
            under a mixed or low-precision dtype policy).
    """

    path: Path
    format: str
    files: tuple[Path, ...]
    class_names: tuple[str, ...] | None
    class_names_location: str | None
    verification: Verification | None
    recreated_in_float32: bool

    def describe(self) -> str:
        """A few lines saying what was written, where the class names went, how it verified."""
        lines = [f"wrote {self.format} to {self.path}"]
        if self.recreated_in_float32:
            lines.append("the model was re-created in float32 with its trained weights")
        if self.class_names is not None:
            lines.append(f"{len(self.class_names)} class names in {self.class_names_location}")
        if self.verification is not None:
            lines.append(self.verification.describe())
        else:
            lines.append("not verified")
        return "\n".join(lines)


def export(
    model: keras.Model,
    path: str | PathLike[str],
    format: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    verify: bool = True,
    samples: int = 16,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> ExportResult:
    """Export a model for another runtime, with its class names, and check what it computes.

    The artifact takes what the model takes (RGB 0-255 images for kzoo's pretrained and transfer
    models: the preprocessing is a layer inside) and computes in float32 whatever dtype policy
    the model was trained under.

    Args:
        model: A Keras model with one input and one output, e.g. ``Transfer.model``.
        path: Where to write: a directory for ``"tf_saved_model"``, a ``.onnx``, ``.tflite`` or
            ``.xml`` (OpenVINO) file for the others. An earlier export there is replaced.
        format: ``"tf_saved_model"``, ``"onnx"``, ``"litert"`` or ``"openvino"``; default: from
            the path's suffix (a path without one of those suffixes is a SavedModel).
        class_names: One name per output unit (two for a single sigmoid unit). Stored in the
            SavedModel (a ``class_names()`` function), in ONNX ``metadata_props``, in the
            OpenVINO IR's ``rt_info``, or beside a ``.tflite`` file as ``<stem>.labels.txt``.
        verify: Load the artifact in its own runtime and compare it with Keras before moving it
            into place.
        samples: How many deterministic RGB 0-255 images the comparison uses.
        tolerance: The largest relative difference allowed (relative to each sample's largest
            output magnitude).
        seed: The seed of the comparison images.

    Returns:
        An :class:`ExportResult`.

    Raises:
        ExportError: A converter or runtime is not installed (naming the pip package), a layer
            cannot be converted (naming it), the artifact differs from Keras beyond the
            tolerance (naming the value, where, and both numbers), or the path is unusable.
        UnknownNameError: An unknown format.
    """
    if not isinstance(model, keras.Model):
        raise ExportError(
            f"model must be a keras.Model; for a saved file, load it first with "
            f"keras.saving.load_model(path) (after import kzoo). Received: model={model!r}"
        )
    path = Path(path).expanduser()
    backend = keras.backend.backend()
    fmt = resolve_format(format, path, backend)
    check_single_io(model)
    check_sampling(samples, tolerance)
    names = _check_class_names(class_names, model)
    for module, package in fmt.converters[backend]:
        require(module, package, f"writing {fmt.name} on the {backend} backend")
    if verify:
        require(fmt.runtime[0], fmt.runtime[1], f"verifying a {fmt.name} export")
    _check_destination(path, fmt)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    staging = _staging_folder(path)
    done = False
    try:
        twin, recreated = float32_twin(model)
        try:
            staged = write_artifact(twin, staging / path.name, fmt, names)
            verification = None
            if verify:
                verification = _verify(
                    staging / path.name, fmt, twin, names, samples, tolerance, seed
                )
        except ExportError as error:  # staged only: say that the destination is untouched
            error.args = (f"{error.message}\nnothing was written at {path}", *error.args[1:])
            raise
        if fmt.side_file and names is None:  # an earlier export's names are not this model's
            labels_file(path).unlink(missing_ok=True)
        files = tuple(_move_into_place(p, path.parent / p.name, staging) for p in staged)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:  # a failed export leaves no trace: not even the folders made for it
            for folder in created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return ExportResult(
        path=path,
        format=fmt.name,
        files=files,
        class_names=names,
        class_names_location=None if names is None else _location(fmt, path),
        verification=verification,
        recreated_in_float32=recreated,
    )


def read_class_names(path: str | PathLike[str], format: str | None = None) -> list[str] | None:
    """The class names an exported artifact carries, read through its own runtime.

    Args:
        path: The SavedModel directory, or the ``.onnx``/``.tflite``/``.xml`` file.
        format: Its format; default: from the path's suffix.

    Returns:
        The names, or None when the artifact carries none.

    Raises:
        ExportError: No artifact there, or its runtime is not installed or cannot load it.
    """
    path = Path(path).expanduser()
    fmt = format_of(path) if format is None else resolve_format(format, path, None)
    return open_artifact(path, fmt).class_names()


def _verify(path, fmt, model, names, samples, tolerance, seed) -> Verification:
    runtime = open_artifact(path, fmt)
    result = verify_runtime(runtime, model, samples=samples, tolerance=tolerance, seed=seed)
    carried = runtime.class_names()
    if names is not None and carried != list(names):
        raise ExportError(
            f"the exported class names do not read back: {runtime.name} gives {carried!r} for "
            f"{list(names)!r}"
        )
    return result


def _check_class_names(class_names: Sequence[str] | None, model: keras.Model) -> tuple | None:
    if class_names is None:
        return None
    if isinstance(class_names, str):
        raise ExportError(
            "class_names must be a sequence of names, not one string. Received: "
            f"class_names={class_names!r}"
        )
    names = tuple(class_names)
    bad = [n for n in names if not isinstance(n, str) or not n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise ExportError(
            f"class names must be non-empty one-line strings. Received: {bad[0]!r} in "
            f"{list(names)!r}"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ExportError(
            f"class names must differ; {twice!r} appear more than once. Received: {list(names)!r}"
        )
    units = model.outputs[0].shape[-1]
    if units is not None and len(names) != units and not (units == 1 and len(names) == 2):
        raise ExportError(
            f"{len(names)} class names for a model with {units} outputs; give one name per "
            f"output unit (two for a single sigmoid unit). Received: {list(names)!r}"
        )
    return names


def _check_destination(path: Path, fmt: Format) -> None:
    """Refuse to replace what is not an earlier artifact of this format."""
    if not path.exists():
        return
    if fmt.suffix is None:
        if not path.is_dir() or (any(path.iterdir()) and not (path / "saved_model.pb").is_file()):
            raise ExportError(
                f"{path} exists and is not a SavedModel, so kzoo will not replace it; choose a "
                "new path or remove it"
            )
    elif not path.is_file():
        raise ExportError(f"{path} exists and is not a file; choose another path or remove it")


def _staging_folder(path: Path) -> Path:
    """A fresh folder beside ``path`` to write into, so that the final move is a rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as error:
        raise ExportError(
            f"cannot write in {path.parent}: {error.strerror or error}; choose a folder you can "
            "write to"
        ) from None


def _move_into_place(source: Path, target: Path, staging: Path) -> Path:
    if target.is_dir() and not target.is_symlink():
        # os.replace cannot put a directory over a non-empty one: set the old one aside first
        aside = staging / f".replaced-{target.name}"
        os.replace(target, aside)
    os.replace(source, target)
    return target


def _location(fmt: Format, path: Path) -> str:
    if fmt.side_file:
        return str(path.with_suffix(".labels.txt"))
    return fmt.labels
