"""When a path's calls fit on the target (ivr.scenarios.slots): the rule `ivr qa` admits each path by. The
waiting itself runs against a real server in tests/e2e/test_qa.py."""

from __future__ import annotations

import pytest

from ivr.scenarios.slots import Load


@pytest.mark.parametrize(("live", "capacity", "need", "fits"), [
    (0, 8, 1, True), (7, 8, 1, True), (8, 8, 1, False), (4, 8, 4, True), (5, 8, 4, False),
    (0, 8, 20, True),   # a load run bigger than the server: admitted on an idle server (its own 503s FAIL it)
    (1, 8, 20, False),  # ... but never beside other calls
    (0, 0, 1, False),   # no worker ready (restarting): nothing fits
    (3, 4, 1, True), (4, 4, 1, False),
])
def test_a_job_fits_when_its_calls_and_the_live_ones_stay_within_capacity(live: int, capacity: int, need: int,
                                                                          fits: bool) -> None:
    assert Load(live, capacity).fits(need) is fits
