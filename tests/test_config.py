"""Config: one frozen, validated value; every invalid option names itself."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import extractors
import pytest

from scraper.config import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BYTES,
    DEFAULT_PER_HOST,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    FETCH_STRATEGIES,
    MAX_PARSERS,
    PARSE_MODES,
    USER_AGENT,
    Config,
)
from scraper.errors import ConfigError, ScraperError


def test_the_default_parsers_stay_within_the_bound_on_a_large_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CPU each, up to MAX_PARSERS: a 384-CPU machine was refused its own default."""
    monkeypatch.setattr("scraper.config.usable_cpus", lambda: 384)
    assert Config().parsers == MAX_PARSERS


def test_defaults_are_valid_and_named() -> None:
    config = Config()
    assert config.depth == 0
    assert config.max_pages is None
    assert config.allow_domains == ()
    assert config.workers == DEFAULT_WORKERS
    assert config.per_host == DEFAULT_PER_HOST
    assert config.parsers >= 1
    assert config.fetch in FETCH_STRATEGIES
    assert config.parse in PARSE_MODES
    assert config.timeout == DEFAULT_TIMEOUT
    assert config.max_bytes == DEFAULT_MAX_BYTES
    assert config.retries == DEFAULT_RETRIES
    assert config.backoff == DEFAULT_BACKOFF
    assert config.user_agent == USER_AGENT
    assert config.output is None
    assert config.extract is None


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 3  # type: ignore[misc]


def test_valid_non_defaults_are_accepted_and_normalized(tmp_path: Path) -> None:
    config = Config(
        depth=3,
        max_pages=1,
        allow_domains=["example.com", "example.org"],  # type: ignore[arg-type]
        workers=1,
        per_host=1,
        parsers=1,
        fetch="sequential",
        parse="inline",
        timeout=0.5,
        max_bytes=1,
        retries=0,
        max_redirects=0,
        backoff=0,
        backoff_cap=0,
        output=str(tmp_path),  # type: ignore[arg-type]
        extract=lambda soup, url: url,
    )
    assert config.allow_domains == ("example.com", "example.org")
    assert isinstance(config.output, Path)
    assert config.output == tmp_path


# option, invalid value
INVALID: list[tuple[str, Any]] = [
    ("depth", -1),
    ("depth", True),
    ("depth", "1"),
    ("depth", None),
    ("max_pages", 0),
    ("max_pages", -5),
    ("max_pages", True),
    ("workers", 0),
    ("workers", "4"),
    ("workers", False),
    ("per_host", 0),
    ("parsers", 0),
    ("parsers", 100_000),  # all started before the first page: gigabytes, minutes
    ("retries", -1),
    ("max_redirects", -1),
    ("max_bytes", 0),
    ("max_bytes", 0.5),
    ("timeout", 0),
    ("timeout", -1.0),
    ("timeout", True),
    ("timeout", "30"),
    ("backoff", -0.1),
    ("backoff_cap", -1),
    ("timeout", 1e10),  # overflows the system's timers
    ("delay", 1e10),
    ("backoff", 1e10),
    ("backoff_cap", 1e10),
    ("fetch", "carrier-pigeon"),
    ("fetch", None),
    ("parse", "gpu"),
    ("user_agent", ""),
    ("user_agent", "   "),
    ("extract", 42),
    ("allow_domains", "example.com"),
    ("ignore_robots", "false"),  # true to an `if`: robots.txt would have been ignored
    ("allow_private", "no"),
    ("save_files", 0),
    ("skipped_log", None),
    ("overwrite", "yes"),
    ("resume", 1),
    ("user_agent", "a\r\nX-Injected: 1"),  # refused by requests, sent by aiohttp
    ("user_agent", "caf\u00e9"),
    ("user_agent", "a\x01b"),
    ("user_agent", " MyBot/1.0"),  # requests refuses leading whitespace; aiohttp sent it
    ("timeout", 10**400),  # math.isfinite overflows
    # too long to write in decimal: the message's repr raised
    pytest.param("timeout", 10**5000, id="timeout-10**5000"),
    pytest.param("depth", -(10**5000), id="depth--10**5000"),
    pytest.param("output", [10**5000], id="output-[10**5000]"),
    pytest.param("fetch", (10**5000,), id="fetch-(10**5000,)"),
    ("output", ""),  # the current directory, silently
    ("output", "out\0put"),
    ("state", "state\0.sqlite"),
    # domains no URL can be in: refused, rather than widening the scope by nothing
    ("allow_domains", ["bad domain"]),
    ("allow_domains", ["ex*ample.com"]),
    ("allow_domains", [""]),
    ("allow_domains", ["example.123"]),
    ("allow_domains", ["256.0.0.1"]),
    ("allow_domains", ["example.com/path"]),
]


@pytest.mark.parametrize(("option", "value"), INVALID)
def test_invalid_values_raise_config_error_naming_the_option(option: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Config(**{option: value})
    assert option in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ScraperError)


def test_a_value_an_error_shows_is_cut_short() -> None:
    with pytest.raises(ConfigError) as caught:
        Config(user_agent="x" * 10_000 + "\n")
    assert len(str(caught.value)) < 200
    with pytest.raises(ConfigError, match="a negative integer of 16610 bits"):
        Config(depth=-(10**5000))


@pytest.mark.parametrize("option", ["depth", "workers", "retries"])
def test_integer_options_reject_fractions(option: str) -> None:
    # workers=2.5 passes validation today and fails later, deep in the crawl
    # (range(2.5), a BoundedSemaphore of 2.5...).
    with pytest.raises(ConfigError, match=option):
        Config(**{option: 2.5})


@pytest.mark.parametrize("option", ["timeout", "backoff"])
def test_float_options_reject_nan(option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        Config(**{option: math.nan})


@pytest.mark.parametrize(
    ("option", "value"),
    [("user_agent", None), ("allow_domains", None), ("output", 3)],
)
def test_wrongly_typed_values_raise_config_error_not_a_crash(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        Config(**{option: value})


def test_from_options_builds_a_config() -> None:
    config = Config.from_options(depth=2, workers=3, fetch="sequential")
    assert (config.depth, config.workers, config.fetch) == (2, 3, "sequential")
    assert config == Config(depth=2, workers=3, fetch="sequential")


def test_from_options_validates_values() -> None:
    with pytest.raises(ConfigError, match="workers"):
        Config.from_options(workers=0)


def test_from_options_rejects_an_unknown_option_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_options(depht=2)
    assert "depht" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_from_options_names_every_unknown_option() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_options(depht=2, wrokers=3, depth=1)
    assert "depht" in str(caught.value)
    assert "wrokers" in str(caught.value)


def test_replace_revalidates() -> None:
    config = Config()
    assert dataclasses.replace(config, workers=2).workers == 2
    with pytest.raises(ConfigError, match="workers"):
        dataclasses.replace(config, workers=0)
    with pytest.raises(ConfigError, match="fetch"):
        dataclasses.replace(config, fetch="nope")


def test_replace_normalizes_again(tmp_path: Path) -> None:
    config = dataclasses.replace(
        Config(),
        allow_domains=["a.example"],  # type: ignore[arg-type]
        output=str(tmp_path),  # type: ignore[arg-type]
    )
    assert config.allow_domains == ("a.example",)
    assert config.output == tmp_path


def test_config_error_is_catchable_as_value_error() -> None:
    with pytest.raises(ValueError, match="per_host"):
        Config(per_host=-3)


def test_an_extraction_the_parse_processes_cannot_receive_is_refused_up_front():
    def nested(soup, url):
        return url

    for extract in (lambda soup, url: url, nested):
        with pytest.raises(ConfigError, match="cannot be sent to the parse processes"):
            Config(extract=extract)  # parse="processes" is the default
        assert Config(extract=extract, parse="threads").extract is extract
    assert Config(extract=extractors.headings).extract is extractors.headings


def test_an_extraction_defined_in_an_interactive_session_is_refused(monkeypatch):
    """It pickles by name, but a parse process cannot import a __main__ without a file."""
    monkeypatch.delattr(sys.modules["__main__"], "__file__", raising=False)

    def typed_in(soup, url):
        return url

    typed_in.__module__ = "__main__"
    with pytest.raises(ConfigError, match="interactive session"):
        Config(extract=typed_in)
