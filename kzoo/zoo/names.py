"""Names in the zoo: which model entry and weight sources a name selects.

``resolve("vgg19.tv_in1k")`` finds the manifest entries behind a load; ``sources("vgg19")``
the weight sources a ``weights`` command acts on. Pure Python.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kzoo.converters import format_for_suffix
from kzoo.errors import KzooError
from kzoo.zoo.entries import ModelEntry, WeightSource
from kzoo.zoo.manifest import ManifestLike, load_manifest

__all__ = ["DEFAULT", "names_a_file", "resolve", "source", "sources"]

DEFAULT = "default"  # weights= value meaning "the model's default_weights"


def names_a_file(name: str) -> bool:
    """Whether ``name`` is a saved model's path (``flowers.keras``, ``out/m``), not a zoo name.

    A Hub id (``hf://org/name``) is a zoo name. The scheme is spelled here rather than asked
    of :mod:`kzoo.download.hub`, so that reading names costs no downloader import.
    """
    if name.strip().lower().startswith("hf://"):
        return False
    return name.endswith((".keras", ".h5")) or "/" in name or "\\" in name


def resolve(
    name: str, weights: Any = DEFAULT, manifest: ManifestLike | None = None
) -> tuple[ModelEntry, WeightSource | None]:
    """The model entry and weight source that ``name`` and ``weights`` select.

    Returns:
        ``(entry, source)``; source is None for ``weights=None`` or a local file.
    """
    man = load_manifest(manifest)
    if names_a_file(name):
        there = "" if Path(name).expanduser().exists() else " (and there is no such file)"
        raise KzooError(
            f"{name!r} looks like a file, and zoo models are named like 'vgg19' or "
            f"'vgg19.caffe'{there}: load a saved model with keras.saving.load_model(path) "
            "after import kzoo"
        )
    model_name, _, tag = name.partition(".")
    entry = man.model(model_name)
    if weights is None:
        return entry, None
    if isinstance(weights, os.PathLike) or (
        isinstance(weights, str)
        and weights != DEFAULT
        and weights not in entry.weights
        and (os.sep in weights or format_for_suffix(Path(weights).suffix) is not None)
    ):
        return entry, None
    if weights != DEFAULT and tag and weights != tag:
        raise KzooError(
            f"the name {name!r} already selects the weights {tag!r}. "
            f"Received: weights={weights!r}; pass one or the other"
        )
    tag = tag or (weights if weights != DEFAULT else entry.default_weights)
    if tag is None:
        return entry, None
    return entry, man.source(model_name, tag)


def sources(
    name: str | None = None, tag: str | None = None, manifest: ManifestLike | None = None
) -> list[WeightSource]:
    """The weight sources a name selects: all of them, a model's, or one ``model.tag``.

    Args:
        name: None (every source), a model (``"vgg19"``: all its sources) or ``"model.tag"``.
        tag: A weights tag, instead of writing it in ``name``.
        manifest: A user manifest merged over the built-in one.

    Raises:
        UnknownNameError: An unknown model or tag.
        KzooError: Two different tags given.
    """
    man = load_manifest(manifest)
    if name is None:
        return [s for m in man.models.values() for s in m.weights.values()]
    model, _, written = name.partition(".")
    if written and tag and written != tag:
        raise KzooError(f"two weights tags given: {written!r} and {tag!r}")
    tag = written or tag
    if tag is None:
        return list(man.model(model).weights.values())
    return [man.source(model, tag)]


def source(name: str, tag: str | None = None, manifest: ManifestLike | None = None) -> WeightSource:
    """The one weight source ``name`` (``"vgg19"``: its default tag) and ``tag`` select.

    Raises:
        UnknownNameError: An unknown model or tag.
        KzooError: The model has no default weights and no tag was given.
    """
    man = load_manifest(manifest)
    model, _, written = name.partition(".")
    if written and tag and written != tag:
        raise KzooError(f"two weights tags given: {written!r} and {tag!r}")
    entry, found = resolve(model, written or tag or DEFAULT, man)
    if found is None:
        raise KzooError(f"{model} has no default weights; name a tag: {list(entry.weights)}")
    return found
