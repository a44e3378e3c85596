"""The built-in demo site: a deterministic local web site for tests, demos and the benchmark.

`scraper.demo.site` models the site and builds its aiohttp app, `scraper.demo.hostile` adds
routes that misbehave on purpose, and `scraper.demo.serve` runs it.
"""

from scraper.demo.hostile import ENCODING_TITLES
from scraper.demo.serve import CannotServe, RunningSite, running_site, serve_forever
from scraper.demo.site import (
    MAILTO_URL,
    OFFSITE_URL,
    PRIVATE_PATH,
    ROBOTS_TXT,
    SiteSpec,
    body_for,
    build_app,
    file_paths,
    page_paths,
)

__all__ = [
    "ENCODING_TITLES",
    "MAILTO_URL",
    "OFFSITE_URL",
    "PRIVATE_PATH",
    "ROBOTS_TXT",
    "CannotServe",
    "RunningSite",
    "SiteSpec",
    "body_for",
    "build_app",
    "file_paths",
    "page_paths",
    "running_site",
    "serve_forever",
]
