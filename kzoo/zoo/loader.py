"""The model zoo: pretrained models by name, with their class names and preprocessing.

>>> model = kzoo.load("vgg19")                      # Oxford weights, Keras's copy
>>> model = kzoo.load("vgg19.tv_in1k", include_top=False, input_shape=(160, 160, 3))
>>> kzoo.decode_predictions(model.predict(images))  # [[(wnid, name, score), ...], ...]
>>> model = kzoo.load("hf://timm/vgg19_bn.tv_in1k")   # a timm repo on the Hugging Face Hub

A load is: manifest entry -> ``kzoo.build(spec)`` with an ImagePreprocessing layer -> the
converted weights from the cache, or else download (verified) -> convert -> store -> assign
by layer name. The converted file's name carries the model, tag, variant, the source file's
hash and the converter version, so a new upstream file or a converter fix never reuses a stale
conversion; a hit costs a few ``stat`` calls and writes nothing (read-only caches work).

Keras is imported inside the functions that need it, so the command line can list models,
fetch and import files without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kzoo import converters
from kzoo.backend import require_backend
from kzoo.builder import build
from kzoo.converters.assign import assign
from kzoo.download import is_hub_id
from kzoo.errors import ConversionError, DownloadError, KzooError
from kzoo.zoo.classes import class_names
from kzoo.zoo.entries import ModelEntry, WeightSource
from kzoo.zoo.hub import hub_model
from kzoo.zoo.manifest import ManifestLike, load_manifest
from kzoo.zoo.names import DEFAULT, resolve
from kzoo.zoo.weights import WeightsPlan

if TYPE_CHECKING:
    import keras

__all__ = ["decode_predictions", "list_models", "load", "prepare_weights", "preprocess_input"]


def load(
    name: str = "vgg19",
    weights: str | os.PathLike[str] | None = DEFAULT,
    include_top: bool = True,
    input_shape: Sequence[int] | None = None,
    pooling: str | None = None,
    preprocessing: bool = True,
    manifest: ManifestLike | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> keras.Model:
    """Build a zoo model and load its pretrained weights.

    Args:
        name: A model (``"vgg19"``), a timm-style ``"model.tag"`` (``"vgg19.tv_in1k"``) or a
            Hub id ``"hf://org/name[@revision]"`` (a timm repo; docs/zoo.md, "Hub ids").
        weights: A weights tag of the model (``"imagenet"``, ``"caffe"``, ``"lasagne"``,
            ``"tv_in1k"``), ``"default"`` for the model's default tag, None for random
            weights, or the path of a local file in a supported format.
        include_top: Keep the classifier (``flatten`` and the FC layers). Without it any
            input size works.
        input_shape: ``(height, width, channels)``; the manifest's when None (and
            ``(None, None, channels)`` without the top).
        pooling: ``"avg"`` or ``"max"`` appends global pooling when ``include_top=False``.
        preprocessing: Put the weights' ImagePreprocessing layer (named ``preprocessing``)
            right after the input, so the model takes RGB images in 0-255.
        manifest: A user manifest (path or dict) merged over the built-in one and
            ``KZOO_MANIFEST``.
        cache_dir: The writable cache root (default ``KZOO_HOME`` or the platform cache).
        progress: Show download progress bars (default: when on a terminal).

    Returns:
        A Functional ``keras.Model`` named after the model.

    Raises:
        UnknownNameError: Unknown model or tag (with suggestions).
        DownloadError: The file cannot be fetched (OfflineError when ``KZOO_OFFLINE=1``).
        ConversionError: The file does not fit the model.
    """
    require_backend()  # before any download: no point fetching weights Keras cannot load
    entry, source, local, normalization = _selected(name, weights, manifest, cache_dir)
    shape = _input_shape(entry, include_top, input_shape, pooling)
    plan = _plan(entry, source, include_top, cache_dir, progress)
    layer = None
    if preprocessing:
        from kzoo.layers import ImagePreprocessing

        mode = source.preprocessing if source else _preprocessing_for(entry, local)
        layer = ImagePreprocessing(mode=mode, **normalization, name="preprocessing")
    model = build(
        entry.spec_for(source or _source_of_format(entry, local)),
        input_shape=shape,
        include_top=include_top,
        pooling=pooling,
        preprocessing=layer,
        name=entry.name,
    )
    fmt = source.format if source is not None else (local[1] if local else None)
    epsilon = converters.FORMATS[fmt].bn_epsilon if fmt else None
    if epsilon is not None:
        _set_bn_epsilon(model, epsilon)
    if plan is None and local is None:
        return model
    slots = converters.slots_of(model)
    if local is not None:
        arrays = converters.convert(local[1], local[0], slots)
    else:
        arrays = plan.arrays(slots)
    wanted = {slot.name for slot in slots}
    assign(model, {k: v for k, v in arrays.items() if k in wanted})
    return model


def prepare_weights(
    name: str = "vgg19",
    weights: str | os.PathLike[str] | None = DEFAULT,
    include_top: bool = True,
    manifest: ManifestLike | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> None:
    """Fetch (or find cached) the files that :func:`load` with these arguments reads.

    Nothing is built and Keras is not imported: the command line calls this first, so an
    unknown name, an unreachable host or a damaged local file is reported in about a second
    rather than after the framework's start-up. ``load`` then finds everything in the cache.

    Args:
        name, weights, include_top, manifest, cache_dir, progress: As for :func:`load`.

    Raises:
        UnknownNameError: Unknown model or tag (with suggestions).
        DownloadError: The file cannot be fetched (OfflineError when ``KZOO_OFFLINE=1``).
        ConversionError: A local weights file that its format's reader refuses.
    """
    entry, source, _, _ = _selected(name, weights, manifest, cache_dir)
    _plan(entry, source, include_top, cache_dir, progress)


def _selected(
    name: str,
    weights: str | os.PathLike[str] | None,
    manifest: ManifestLike | None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[ModelEntry, WeightSource | None, tuple[Path, str] | None, dict[str, Any]]:
    """The entry, its weight source, a local weights file (read once: a bad one fails), and
    the preprocessing's mean/std when the source has its own (Hub repos)."""
    if is_hub_id(name):
        if weights not in (DEFAULT, None):
            raise KzooError(
                f"a Hub id carries its weights: pass weights='default' or None. "
                f"Received: name={name!r}, weights={weights!r}"
            )
        found = hub_model(name, cache_dir)
        return found.entry, found.source if weights else None, None, found.normalization
    entry, source = resolve(name, weights, load_manifest(manifest))
    local = _local_file(weights, entry) if source is None and weights is not None else None
    if local is not None:  # a bad file fails now, before the (slow) build
        converters.inspect(local[1], local[0], values=False)
    return entry, source, local, {}


def _plan(
    entry: ModelEntry,
    source: WeightSource | None,
    include_top: bool,
    cache_dir: str | os.PathLike[str] | None,
    progress: bool | None,
) -> WeightsPlan | None:
    """Where the source's converted weights come from; every file it needs found or fetched."""
    if source is None:
        return None
    return WeightsPlan(source, include_top, cache_dir, progress, others=entry.weights.values())


def list_models(
    pattern: str = "*", pretrained: bool = False, manifest: ManifestLike | None = None
) -> list[str]:
    """Names of the zoo's models, sorted.

    Args:
        pattern: fnmatch wildcards (``"vgg1?"``, ``"*bn*"``), matched against the model name
            and, with ``pretrained=True``, against ``model.tag`` too.
        pretrained: List one ``"model.tag"`` per weight source instead of model names.
        manifest: A user manifest merged over the built-in one.

    Returns:
        The matching names.
    """
    return load_manifest(manifest).names(pattern, pretrained)


def decode_predictions(
    preds: Any,
    top: int = 5,
    weights: str = "vgg19.imagenet",
    manifest: ManifestLike | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[list[tuple[str, str, float]]]:
    """The ``top`` classes of each prediction, with the weight source's class names.

    Args:
        preds: Scores of shape ``(batch, classes)``.
        top: How many classes per row.
        weights: The ``"model.tag"`` whose class list applies (or a model, for its default).
        manifest: A user manifest merged over the built-in one.
        cache_dir: The writable cache root.

    Returns:
        One list per row of ``(wnid, name, score)``, best first.
    """
    import numpy as np

    names = class_names(weights, manifest=manifest, cache_dir=cache_dir)
    scores = np.asarray(preds)
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise ValueError(
            f"decode_predictions expects a batch of {len(names)} scores, shape (batch, "
            f"{len(names)}), for {weights!r}. Received: shape={scores.shape}"
        )
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return [
        [(*names[i], float(row[i])) for i in idx] for row, idx in zip(scores, order, strict=True)
    ]


def preprocess_input(
    x: Any, weights: str = "vgg19.imagenet", manifest: ManifestLike | None = None
) -> Any:
    """Apply a weight source's preprocessing to RGB 0-255 images outside the model.

    Use this only with models loaded with ``preprocessing=False``.

    Args:
        x: Images, channels last, RGB in 0-255 (NumPy array or tensor).
        weights: The ``"model.tag"`` (or model) whose convention applies.
        manifest: A user manifest merged over the built-in one.

    Returns:
        The preprocessed images, same type as ``x``.
    """
    from kzoo.layers import preprocess_images

    if is_hub_id(weights):
        found = hub_model(weights)
        return preprocess_images(x, found.source.preprocessing, **found.normalization)
    _, source = resolve(weights, DEFAULT, load_manifest(manifest))
    return preprocess_images(x, source.preprocessing if source else "none")


# --- internals ---------------------------------------------------------------------------


def _input_shape(
    entry: ModelEntry, include_top: bool, input_shape: Sequence[int] | None, pooling: str | None
) -> tuple[int | None, ...]:
    if include_top:
        if input_shape is not None and tuple(input_shape) != entry.input_shape:
            raise ValueError(
                f"{entry.name} with include_top=True takes input_shape={entry.input_shape} "
                f"(its FC layers fix the size). Received: input_shape={tuple(input_shape)}. "
                "Pass include_top=False to use another size."
            )
        if pooling is not None:
            raise ValueError(
                f"pooling applies only with include_top=False. Received: pooling={pooling!r}"
            )
        return entry.input_shape
    if input_shape is None:
        return (None, None, entry.input_shape[-1])
    if len(input_shape) != 3 or input_shape[-1] != entry.input_shape[-1]:
        raise ValueError(
            f"{entry.name} takes (height, width, {entry.input_shape[-1]}) images. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return tuple(input_shape)


def _local_file(weights: Any, entry: ModelEntry) -> tuple[Path, str]:
    path = Path(os.fspath(weights)).expanduser()
    fmt = converters.format_for_suffix(path.suffix)
    if not path.is_file():
        raise DownloadError(f"weights file not found. Received: weights={str(weights)!r}")
    if fmt is None:
        suffixes = sorted(s for f in converters.FORMATS.values() for s in f.suffixes)
        raise ConversionError(
            f"cannot tell the format of {path.name} from its suffix; use one of "
            f"{suffixes} or register it in a manifest. Received: {str(path)!r}"
        )
    return path, fmt.name


def _set_bn_epsilon(model: keras.Model, epsilon: float) -> None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.epsilon = epsilon  # read at call time and saved by get_config


def _source_of_format(entry: ModelEntry, local: tuple[Path, str] | None) -> WeightSource | None:
    """The model's first weight source in a local file's format (its spec fits the file)."""
    if local is None:
        return None
    return next((s for s in entry.weights.values() if s.format == local[1]), None)


def _preprocessing_for(entry: ModelEntry, local: tuple[Path, str] | None) -> str:
    """The preprocessing of random (weights=None) or local-file weights."""
    if local is None:  # random weights: keep the default source's convention
        default = entry.weights.get(entry.default_weights or "")
        return default.preprocessing if default else "none"
    for source in entry.weights.values():
        if source.format == local[1]:
            return source.preprocessing
    return converters.FORMATS[local[1]].preprocessing
