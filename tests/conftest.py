"""Test-wide fixtures: every test gets its own empty kzoo cache and no network by accident."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def kzoo_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point KZOO_HOME at a fresh folder and clear the other kzoo environment variables."""
    home = tmp_path_factory.mktemp("kzoo_home")
    monkeypatch.setenv("KZOO_HOME", str(home))
    for name in ("KZOO_OFFLINE", "KZOO_MANIFEST", "KZOO_READONLY_CACHES"):
        monkeypatch.delenv(name, raising=False)
    return home
