"""``kzoo export``: write a saved model for another runtime, with its class names, verified.

    kzoo export flowers.keras --format onnx --out flowers.onnx

The class names come from ``--labels``, else from ``<model stem>.labels.txt`` beside the model
(what ``kzoo transfer --out flowers.keras`` writes). The artifact is reloaded in its own runtime
and compared with Keras before it is moved into place, unless ``--no-verify``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras

from kzoo.cli.quiet import native_noise_dropped
from kzoo.deploy import export
from kzoo.errors import ExportError, KzooError

__all__ = ["run_export"]


def run_export(args: argparse.Namespace) -> int:
    """Load the model and its class names, export, print what was written and how it checked."""
    source = Path(args.model).expanduser()
    labels = Path(args.labels).expanduser() if args.labels else source.with_suffix(".labels.txt")
    names = _read_names(labels, given=bool(args.labels)) if labels.is_file() else None
    try:
        model = keras.saving.load_model(source, compile=False)
    except Exception as error:  # a file Keras cannot read: say which and why, briefly
        raise KzooError(
            f"cannot load {source} as a Keras model: {type(error).__name__}: {error}"
        ) from error
    with native_noise_dropped():
        result = export(model, args.out, args.format, class_names=names, verify=not args.no_verify)
    print(result.describe())
    if names is None:
        print(f"no class names carried: {labels} does not exist (pass --labels FILE)")
    if len(result.files) > 1:
        print("files: " + ", ".join(str(p) for p in result.files))
    return 0


def _read_names(path: Path, given: bool) -> list[str]:
    """Class names from a text file (one per line) or a JSON list."""
    where = f"--labels {path}" if given else f"{path} (the model's labels file)"
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise ValueError("a JSON labels file must hold a list of names")
            return [str(name) for name in data]
        return [line.strip() for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ExportError(
            f"cannot read class names from {where}: {error}. Give a text file with one name "
            "per line, or a JSON list"
        ) from None
