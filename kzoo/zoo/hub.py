"""Hub ids as zoo models: ``hf://timm/vgg19.tv_in1k`` -> a model entry from the repo's config.

A timm repo holds ``config.json`` and ``model.safetensors``. The config decides:

* the architecture: timm's ``architecture`` names a kzoo named architecture
  (:data:`TIMM_ARCHITECTURES`; one kzoo cannot build is an error listing those it can);
* the number of classes (``num_classes``): the architecture's classifier gets that many units;
* the preprocessing layer: ``pretrained_cfg``'s ``mean``/``std`` (RGB in 0-1) and its
  ``input_size`` (channels, height, width);
* the class names: ``label_names`` when given, else ImageNet-1k's for 1000 classes, else
  ``class 0``, ``class 1``...

The weights file becomes a manifest-style source whose URL is pinned to the commit the
revision resolved to (``hf://timm/vgg19.tv_in1k@<commit>/model.safetensors``) and whose
sha256 is the one the Hub named, so the zoo's cache, conversion store and checks work as for
any other source. The bytes move through :mod:`kzoo.download` (no request offline).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kzoo import download
from kzoo.converters import FORMATS
from kzoo.download import hub
from kzoo.dsl import get_architecture
from kzoo.errors import ConversionError, EntryNotFoundError, KzooError, UnknownNameError
from kzoo.zoo.entries import FileEntry, ModelEntry, WeightSource
from kzoo.zoo.weights import fetch_raw

__all__ = [
    "TIMM_ARCHITECTURES",
    "HubModel",
    "fetch_hub",
    "hub_model",
    "supported_architectures",
]

PathLike = str | os.PathLike[str]

# timm architecture -> (kzoo named architecture, weights format, head after the last conv)
TIMM_ARCHITECTURES: dict[str, tuple[str, str, str]] = {
    **{
        f"vgg{depth}{bn}": (f"vgg{depth}{bn}", "torch", "flatten")
        for depth in (11, 13, 16, 19)
        for bn in ("", "_bn")
    },
    "resnet18": ("resnet18", "torch", "gap"),
    "resnet34": ("resnet34", "torch", "gap"),
    "resnet50": ("resnet50_torch", "torch", "gap"),
    "resnet101": ("resnet101_torch", "torch", "gap"),
    "resnet152": ("resnet152_torch", "torch", "gap"),
}
_WEIGHTS_FILE = "model.safetensors"
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CLASSIFIER = re.compile(r"FC(\d+)$")


def supported_architectures() -> list[str]:
    """The timm architectures kzoo can build now, sorted."""
    return sorted(
        timm
        for timm, (kzoo_name, fmt, _) in TIMM_ARCHITECTURES.items()
        if get_architecture(kzoo_name) is not None and _format_known(fmt)
    )


def _format_known(fmt: str) -> bool:
    return fmt in FORMATS


@dataclass(frozen=True)
class HubModel:
    """A Hub repo as a zoo model.

    Attributes:
        repo: ``"org/name"``.
        commit: The commit the load uses.
        entry: The model entry (spec, input shape, the one weight source).
        source: Its weight source (``hf://...@<commit>/model.safetensors``, sha256 pinned).
        mean, std: The preprocessing's per-channel mean and standard deviation (RGB, 0-1).
        labels: ``(wnid, name)`` per class from ``label_names`` or numbered, or None when the
            source's class list (ImageNet-1k) applies.
    """

    repo: str
    commit: str
    entry: ModelEntry
    source: WeightSource
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[tuple[str, str], ...] | None

    @property
    def normalization(self) -> dict[str, tuple[float, ...] | None]:
        """``mean``/``std`` for :class:`kzoo.layers.ImagePreprocessing`, None when torch's."""
        same = _close(self.mean, _TORCH_MEAN) and _close(self.std, _TORCH_STD)
        return {"mean": None, "std": None} if same else {"mean": self.mean, "std": self.std}


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def hub_model(hf_id: str, cache_dir: PathLike | None = None) -> HubModel:
    """The zoo model a Hub id stands for, read from the repo's ``config.json``.

    Costs one HEAD online for a branch or tag (to learn its commit), none for a commit seen
    before or offline; the weights file itself is fetched later, by the load.

    Raises:
        UnknownNameError: An architecture kzoo cannot build (the message lists those it can).
        KzooError: A malformed id or config.
        HubError, OfflineError, DownloadError: The repo or its files cannot be had.
    """
    ident = hub.parse(hf_id)
    if ident.filename is not None:
        raise KzooError(
            f"a model id names a repo, not a file: 'hf://org/name[@revision]'. Received: "
            f"{hf_id!r} (fetch single files with kzoo.download.hub_file)"
        )
    commit = download.locate(ident.repo, "config.json", ident.rev, cache_dir).commit
    config_path = download.hub_file(ident.repo, "config.json", commit, cache_dir)
    config = _read_config(config_path, hf_id)
    timm_name = str(config.get("architecture", ""))
    supported = supported_architectures()
    if timm_name not in supported:
        raise UnknownNameError(
            "hub architecture",
            timm_name,
            supported,
            hint=f"{hf_id} is a timm {timm_name!r}; kzoo builds these timm architectures: "
            f"{', '.join(supported)}",
        )
    kzoo_name, fmt, head = TIMM_ARCHITECTURES[timm_name]
    pretrained = config.get("pretrained_cfg") or {}
    classes = _positive_int(config.get("num_classes", pretrained.get("num_classes", 1000)), hf_id)
    spec, _ = get_architecture(kzoo_name)  # type: ignore[misc] - supported: it exists
    input_shape = _input_shape(pretrained.get("input_size", [3, 224, 224]), hf_id)
    mean = _channels(pretrained.get("mean", _TORCH_MEAN), "mean", hf_id)
    std = _channels(pretrained.get("std", _TORCH_STD), "std", hf_id)
    try:
        weights = download.locate(ident.repo, _WEIGHTS_FILE, commit, cache_dir)
    except EntryNotFoundError as exc:
        raise EntryNotFoundError(
            f"{exc.message}\nkzoo reads a timm repo's {_WEIGHTS_FILE} (safetensors, no code "
            "runs on load); this repo has none.",
            code=exc.code,
            repo=exc.repo,
        ) from None
    if weights.info.sha256 is None:
        raise ConversionError(
            f"{ident.repo}@{commit[:12]}/{_WEIGHTS_FILE} is stored in git, not LFS, so the Hub "
            "names no sha256 for it and kzoo cannot verify it"
        )
    labels, class_index = _labels(config, pretrained, classes)
    org, name = ident.repo.split("/")
    tag = f"hf--{org}--{name}"
    file = FileEntry((weights.url,), weights.info.size, None, weights.info.sha256)
    source = WeightSource(
        model=kzoo_name,
        tag=tag,
        format=fmt,
        preprocessing="torch",
        files={"top": file},
        classes=class_index,
        license=pretrained.get("license") or None,
        description=f"{hf_id} at commit {commit}",
    )
    entry = ModelEntry(
        name=kzoo_name,
        spec=_with_classes(spec, classes, kzoo_name),
        input_shape=input_shape,
        head=head,
        default_weights=tag,
        weights={tag: source},
        description=f"timm {timm_name} from {ident.repo}",
    )
    return HubModel(ident.repo, commit, entry, source, mean, std, labels)


def fetch_hub(hf_id: str, cache_dir: PathLike | None = None, progress: bool | None = None) -> Path:
    """Download and verify (or find cached) what a Hub id names; return its path.

    ``hf://org/name[@revision]`` is a model: its weights file, where a load reads it.
    ``hf://org/name@revision/path/in/repo`` is one file of the repo.

    Raises:
        HubError, OfflineError, DownloadError, ChecksumError: The file cannot be had.
    """
    ident = hub.parse(hf_id)
    if ident.filename is not None:
        return download.hub_file(ident.repo, ident.filename, ident.rev, cache_dir,
                                 progress=progress)  # fmt: skip
    found = hub_model(hf_id, cache_dir)
    return fetch_raw(found.source, "top", cache_dir, progress)


def _read_config(path: Path, hf_id: str) -> dict:
    try:
        config = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise KzooError(f"{hf_id}: config.json is not JSON ({exc}). Received: {path}") from None
    if not isinstance(config, dict):
        raise KzooError(f"{hf_id}: config.json is not a JSON object. Received: {path}")
    return config


def _positive_int(value: object, hf_id: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KzooError(f"{hf_id}: num_classes must be a positive integer. Received: {value!r}")
    return value


def _input_shape(value: object, hf_id: str) -> tuple[int, int, int]:
    ok = isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)
    if not ok or min(value) < 1:  # type: ignore[arg-type]
        raise KzooError(
            f"{hf_id}: pretrained_cfg.input_size must be [channels, height, width]. "
            f"Received: {value!r}"
        )
    channels, height, width = value  # type: ignore[misc]
    return (height, width, channels)


def _channels(value: object, what: str, hf_id: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise KzooError(f"{hf_id}: pretrained_cfg.{what} must be numbers. Received: {value!r}")
    return tuple(float(v) for v in value)


def _labels(
    config: dict, pretrained: dict, classes: int
) -> tuple[tuple[tuple[str, str], ...] | None, str | None]:
    names = config.get("label_names") or pretrained.get("label_names")
    if isinstance(names, list) and len(names) == classes:
        return tuple(("", str(n)) for n in names), None
    if classes == 1000:
        return None, "imagenet1k"
    return tuple(("", f"class {i}") for i in range(classes)), None


def _with_classes(spec: str, classes: int, kzoo_name: str) -> str:
    """The architecture with ``classes`` units in its classifier (its last ``FC<n>``)."""
    match = _CLASSIFIER.search(spec)
    if match is None:
        raise KzooError(f"the named architecture {kzoo_name!r} does not end in a classifier")
    return spec if int(match.group(1)) == classes else f"{spec[: match.start()]}FC{classes}"
