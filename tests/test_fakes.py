"""The fakes themselves follow the contracts (shared authentik §7 table, Knative cold start,
RFC 6455): the integration tests are only as good as the parts they run against."""

from __future__ import annotations

import pytest

from fakes import selftest_fakes
from fakes.outpost import FakeOutpost
from fakes.upstream import FakeUpstream


@pytest.fixture(scope="module")
def fakes():
    with FakeOutpost() as outpost, FakeUpstream() as upstream:
        yield outpost, upstream


@pytest.mark.parametrize("check", selftest_fakes.TESTS, ids=[t.__name__.removeprefix("t_") for t in selftest_fakes.TESTS])
def test_fake_follows_the_contract(fakes, check):
    outpost, upstream = fakes
    outpost.mode = "normal"
    check(outpost, upstream)
