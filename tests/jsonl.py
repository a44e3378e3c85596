"""Reading the crawl's JSONL output in tests: one strict parse of every line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of `path` as JSON (none when the file was never written)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def skipped_by_url(output: Path) -> dict[str, dict[str, Any]]:
    """skipped.jsonl of an output directory, by URL."""
    return {entry["url"]: entry for entry in read_jsonl(output / "skipped.jsonl")}
