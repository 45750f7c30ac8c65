"""The weights manifest: which models exist, where their weights live, how to check them.

The built-in manifest ships inside the package (``kzoo/zoo/weights_manifest.json``). Users add
models and sources, or point files at their own mirrors, with manifests of their own, merged
on top in this order: built-in, then each file in ``KZOO_MANIFEST`` (``os.pathsep``-separated),
then the ``manifest=`` argument. Merging is by key: objects merge recursively, every other
value (lists included) replaces the one below it. In user manifests a URL may be a plain path,
resolved against the manifest's own folder.

Pure Python on purpose: ``kzoo models`` reads the manifest without importing Keras.
The schema is documented in docs/zoo.md; :mod:`.schema` validates it into :mod:`.entries`.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from kzoo.errors import ManifestError
from kzoo.zoo.entries import Manifest
from kzoo.zoo.schema import parse, short

__all__ = [
    "ENV_VAR",
    "ManifestLike",
    "builtin_manifest_path",
    "load_manifest",
    "merge_manifests",
    "parse_manifest",
]

ENV_VAR = "KZOO_MANIFEST"

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")

ManifestLike = Union[str, os.PathLike, Mapping[str, Any], "Manifest"]


def builtin_manifest_path() -> Path:
    """The manifest that ships inside the package."""
    return Path(__file__).with_name("weights_manifest.json")


def load_manifest(user: ManifestLike | Sequence[ManifestLike] | None = None) -> Manifest:
    """The built-in manifest merged with ``KZOO_MANIFEST`` and then ``user``.

    Args:
        user: A manifest file path, a dict in the manifest schema, an already loaded
            Manifest (returned as is), or a list of those; merged last.

    Returns:
        The validated Manifest.

    Raises:
        ManifestError: A file cannot be read or parsed, or the merged result does not validate;
            the message names the bad key path, like
            ``models.vgg19.weights.imagenet.files.top.size``.
    """
    if isinstance(user, Manifest):
        return user
    data = _read_json(builtin_manifest_path(), resolve_paths=False)
    origins = ["built-in"]
    layers: list[ManifestLike] = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    if isinstance(user, (list, tuple)):
        layers.extend(user)
    elif user is not None:
        layers.append(user)
    for layer in layers:
        if isinstance(layer, Manifest):
            raise ManifestError("a loaded Manifest cannot be merged; pass a path or a dict")
        if isinstance(layer, Mapping):
            overlay, origin = _resolve_urls(copy.deepcopy(dict(layer)), Path.cwd()), "<dict>"
        else:
            path = Path(os.fspath(layer)).expanduser()
            overlay, origin = _read_json(path, resolve_paths=True), str(path)
        data = merge_manifests(data, overlay)
        origins.append(origin)
    return parse_manifest(data, origins=tuple(origins))


def merge_manifests(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` onto ``base``: objects recursively, any other value replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_manifests(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_manifest(data: Any, origins: tuple[str, ...] = ()) -> Manifest:
    """Validate a manifest in its JSON form and turn it into frozen dataclasses.

    Args:
        data: The decoded JSON object.
        origins: Where it came from, for error messages.

    Returns:
        The Manifest.

    Raises:
        ManifestError: naming the first bad key path and what was received.
    """
    where = f" (merged from {', '.join(origins)})" if origins else ""
    try:
        return parse(data, origins)
    except ManifestError as error:
        raise ManifestError(f"invalid weights manifest{where}: {error}") from None


# --- reading ----------------------------------------------------------------------------


def _read_json(path: Path, resolve_paths: bool) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ManifestError(
            f"manifest file not found: {path} (check {ENV_VAR} or the manifest= argument)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"cannot read manifest {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"manifest {path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path} must hold a JSON object. Received: {short(data)}")
    return _resolve_urls(data, path.parent) if resolve_paths else data


def _resolve_urls(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Turn plain paths in every ``urls`` list into absolute ``file://`` URLs."""
    for key, value in data.items():
        if key == "urls" and isinstance(value, list):
            data[key] = [
                (base / os.path.expanduser(u)).resolve().as_uri()
                if isinstance(u, str) and u and not _URL.match(u)
                else u
                for u in value
            ]
        elif isinstance(value, dict):
            _resolve_urls(value, base)
    return data
