"""kzoo.report.write_report: one self-contained HTML page; rendered by chromium where present."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image

from kzoo.loop import calibrate, interpret, lr_find
from kzoo.report import SECTIONS, write_report
from tests.loop_data import digits, small_cnn


class _Links(HTMLParser):
    """Every attribute that can load something, and the section ids."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.sections: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action", "background"):
                self.loads.append((name, value or ""))
            if tag == "section" and name == "id":
                self.sections.append(value)


class _DataCheck:
    def to_dict(self):
        return {"images": 700, "duplicates": [["a.png", "b.png"]], "undecodable": []}


@pytest.fixture(scope="module")
def run():
    x, y = digits()
    x, y = x[:700], y[:700]
    model = small_cnn(0)
    model.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    finder = lr_find(model, x[:500], y[:500], steps=20)
    fit = model.fit(x[:500], y[:500], epochs=2, validation_data=(x[500:600], y[500:600]),
                    verbose=0)  # fmt: skip
    history = SimpleNamespace(history=fit.history, phase_boundary=1)
    calibrated = calibrate(model, x[500:600], y[500:600])
    found = interpret(model, (x[600:], y[600:]))
    return history, finder, found, calibrated


def _write(tmp_path, run, **extra):
    history, finder, found, calibrated = run
    return write_report(
        tmp_path / "report.html",
        history=history,
        lr_finder=finder,
        interpretation=found,
        calibration=calibrated,
        data_check=_DataCheck(),
        weights_info={"source": "kzoo.build('lenet')", "sha256": "ab" * 32, "licence": "MIT"},
        top_losses=4,
        **extra,
    )


def test_the_report_is_one_self_contained_file_with_every_section(tmp_path, run):
    path = _write(tmp_path, run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    page = path.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert parser.sections == list(SECTIONS)
    assert parser.loads, "no images"
    assert all(name == "src" and value.startswith("data:image/") for name, value in parser.loads)
    assert not parser.tags & {"script", "link", "iframe", "object", "embed", "base"}
    outside = re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", page)
    assert "http://" not in outside and "https://" not in outside and "//" not in outside
    assert "url(" not in outside and "@import" not in outside
    finder = run[1]
    assert f"{finder.suggestion:.3g}" in page and finder.rule in page and "hint" in page
    assert "ab" * 32 in page and "MIT" in page
    assert "ECE" in page and f"{run[3].calibration.temperature:.4g}" in page
    assert "a.png" in page  # the data check's entries


def test_only_the_sections_given_appear(tmp_path, run):
    history = run[0]
    path = write_report(tmp_path / "r.html", history=history)
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    assert parser.sections == ["learning-curves"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_chromium_renders_the_report_offline(tmp_path, run):
    path = _write(tmp_path, run)
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", f"--user-data-dir={profile}",
            f"--screenshot={shot}", "--window-size=1200,2400", path.as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 5  # not a blank page
    # the pictures were drawn: some dark pixels besides the text
    assert (pixels < 100).mean() > 0.01
