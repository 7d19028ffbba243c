"""The fakes themselves follow the contracts (shared authentik §7 table and, for the Rust
outpost, tests/fakes/authentik-rust-outpost.md; Knative cold start; RFC 6455): the integration
tests are only as good as the parts they run against."""

from __future__ import annotations

import pytest

from fakes import selftest_fakes
from fakes.outpost import FakeOutpost
from fakes.upstream import FakeUpstream


@pytest.fixture(scope="module")
def fakes():
    with FakeOutpost() as outpost, FakeUpstream() as upstream:
        yield outpost, upstream


@pytest.fixture(scope="module")
def rust_fakes():
    with FakeOutpost(generation="rust") as outpost, FakeUpstream() as upstream:
        yield outpost, upstream


@pytest.mark.parametrize("check", selftest_fakes.TESTS, ids=[t.__name__.removeprefix("t_") for t in selftest_fakes.TESTS])
def test_fake_follows_the_contract(fakes, check):
    outpost, upstream = fakes
    outpost.mode = "normal"
    check(outpost, upstream)


@pytest.mark.parametrize("check", selftest_fakes.TESTS_RUST,
                         ids=[t.__name__.split("_", 1)[1] for t in selftest_fakes.TESTS_RUST])
def test_rust_fake_follows_its_contract(rust_fakes, check):
    """The Rust generation, as tests/fakes/authentik-rust-outpost.md describes it."""
    outpost, upstream = rust_fakes
    outpost.mode = "normal"
    check(outpost, upstream)
