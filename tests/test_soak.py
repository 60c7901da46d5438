"""The model-based soak, short and seeded (the long one: python -m sdtest.soak --minutes N)."""

from __future__ import annotations

import pytest

from sdtest.soak import soak

pytestmark = pytest.mark.slow  # real server processes: not in the everyday subset


def test_a_seeded_minute_of_churn_and_faults_converges_at_every_quiet_point(tmp_path):
    result = soak(seed=20261201, seconds=45, dump_dir=tmp_path)
    assert result["quiet_points"] >= 10 and result["reads"] > 0
