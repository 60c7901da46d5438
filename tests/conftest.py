"""Fixtures shared by the tests that run the server against the loopback API double."""

from __future__ import annotations

import pytest

from sdtest.helpers import FAST
from sdtest.kubeapi import FakeKubeAPI


@pytest.fixture
def api():
    with FakeKubeAPI() as api:
        yield api


@pytest.fixture
def config_file(tmp_path):
    """FAST (small pages, short timeouts, quick retries) as a config file."""
    path = tmp_path / "sd.yaml"
    path.write_text(FAST)
    return str(path)
