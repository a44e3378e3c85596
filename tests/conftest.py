"""Shared fixtures: the built-in demo site on 127.0.0.1, bound to a port it picks itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scraper.demo import RunningSite, SiteSpec, running_site


@pytest.fixture(scope="module")
def demo_site() -> Iterator[RunningSite]:
    """A 60-page demo site, shared by the tests of one module (they only read from it)."""
    with running_site(SiteSpec(pages=60, fanout=4)) as site:
        yield site


@pytest.fixture
def fresh_site() -> Iterator[RunningSite]:
    """A demo site of its own, for tests that count the server's hits."""
    with running_site(SiteSpec(pages=30, fanout=3)) as site:
        yield site
