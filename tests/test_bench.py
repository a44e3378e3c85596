"""scrape bench: the pure figures, option parsing, and one real small bench end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from scraper import config
from scraper.bench import (
    SCENARIOS,
    Figures,
    RunResult,
    Scenario,
    ceiling_share,
    io_ceiling,
    main,
    median_figures,
    parse_names,
    resolve_scenario,
    results_table,
    summarize,
)

IO = Scenario("io", latency_ms=50, pages=300, page_kb=4, workers=16)


def figures(pages_per_s: float, *, errors: int = 0, pages: int = 100) -> Figures:
    return Figures(
        pages=pages,
        errors=errors,
        pages_per_s=pages_per_s,
        wall_s=pages_per_s / 10,
        cpu_s=1.0,
        tree_rss_mb=100.0,
        largest_rss_mb=50.0,
        mb_per_s=2.0,
    )


def test_median_figures_takes_each_median_and_the_most_errors():
    median = median_figures([figures(10, errors=1), figures(30), figures(20, errors=4)])
    assert median.pages_per_s == 20
    assert median.wall_s == 2
    assert median.errors == 4
    assert median.pages == 100


def test_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert median_figures([figures(10), figures(20)]).pages_per_s == 15


def test_ceiling_is_workers_over_latency_and_one_over_latency_for_sequential():
    assert io_ceiling(IO, "threads") == 320
    assert io_ceiling(IO, "sequential") == 20
    assert io_ceiling(resolve_scenario("cpu"), "threads") is None


def test_ceiling_share_is_a_percentage_or_none_without_a_ceiling():
    assert ceiling_share(160, 320) == 50
    assert ceiling_share(160, None) is None


def test_summarize_keeps_the_medians_of_finished_repeats_and_marks_a_failure():
    runs = [
        RunResult("threads", "inline", 1, figures(300)),
        RunResult("threads", "inline", 2, None, "timed out after 300 s"),
        RunResult("threads", "inline", 3, figures(100)),
    ]
    row = summarize(IO, "threads", "inline", runs)
    assert row.median is not None
    assert row.median.pages_per_s == 200
    assert row.failure == "timed out after 300 s"
    assert row.share == pytest.approx(62.5)
    assert len(row.runs) == 3


def test_a_row_with_no_finished_repeat_has_no_figures_and_still_renders():
    row = summarize(IO, "sequential", "inline", [RunResult("sequential", "inline", 1, None, "x")])
    assert row.median is None
    assert row.share is None
    assert results_table(IO, [row], 1).row_count == 1


def test_the_table_has_a_ceiling_column_only_when_there_is_latency():
    row = summarize(IO, "threads", "inline", [RunResult("threads", "inline", 1, figures(1))])
    with_latency = [column.header for column in results_table(IO, [row], 1).columns]
    cpu = resolve_scenario("cpu")
    without = [column.header for column in results_table(cpu, [row], 1).columns]
    assert "of ceiling" in with_latency
    assert "of ceiling" not in without


def test_resolve_scenario_applies_only_the_overrides_given():
    assert resolve_scenario("io") == SCENARIOS["io"]
    mixed = resolve_scenario("mixed", pages=7, latency_ms=0.0)
    assert (mixed.pages, mixed.latency_ms) == (7, 0)
    assert (mixed.page_kb, mixed.workers) == (
        SCENARIOS["mixed"].page_kb,
        SCENARIOS["mixed"].workers,
    )


def test_scenarios_are_as_documented():
    assert SCENARIOS["io"].latency_ms == 50
    assert SCENARIOS["cpu"].latency_ms == 0
    assert SCENARIOS["cpu"].page_kb >= 64
    assert 0 < SCENARIOS["mixed"].latency_ms < SCENARIOS["io"].latency_ms


def test_parse_names_keeps_order_drops_repeats_and_blanks():
    known = ("threads", "sequential", "async")
    assert parse_names(" async, threads,,async ", known, "fetch strategy") == ("async", "threads")


@pytest.mark.parametrize("text", ["threads,bogus", "", " , "])
def test_parse_names_rejects_unknown_or_no_names(text):
    with pytest.raises(ValueError, match="choose from threads, sequential"):
        parse_names(text, ("threads", "sequential"), "fetch strategy")


def test_unknown_names_on_the_command_line_exit_2_with_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--fetch", "threads,warp"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown fetch strategy 'warp'" in error
    assert ", ".join(config.FETCH_STRATEGIES) in error
    with pytest.raises(SystemExit):
        main(["--parse", "inline,psychic"])
    assert "unknown parse mode 'psychic'" in capsys.readouterr().err


def _descendants(root: int) -> set[int]:
    """Every process below `root`, zombies included (an unreaped child is left behind too)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as file:
                    stat = file.read()
            except OSError:
                continue
            parents[int(name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = set(), [root]
    while frontier:
        parent = frontier.pop()
        children = {pid for pid, ppid in parents.items() if ppid == parent}
        frontier += children - found
        found |= children
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_a_small_bench_end_to_end(tmp_path, capsys):
    # CI installs the test extra, which has matplotlib: there the chart must be drawn.
    has_matplotlib = bool(os.environ.get("CI")) or importlib.util.find_spec("matplotlib")
    before = _descendants(os.getpid())

    status = main(
        [
            *("--scenario", "io", "--pages", "20", "--latency-ms", "5", "--repeat", "1"),
            *("--fetch", "threads,sequential", "--parse", "inline", "--output", str(tmp_path)),
        ]
    )

    assert status == 0
    assert _descendants(os.getpid()) <= before, "a server or crawl process was left behind"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["scenario"] == {
        "name": "io",
        "latency_ms": 5.0,
        "pages": 20,
        "page_kb": 4,
        "workers": 16,
        "frontier": "sqlite",
    }
    assert results["machine"]["cpus"] == os.cpu_count()
    assert {"scraper", "requests", "aiohttp", "lxml"} <= set(results["machine"]["versions"])
    rows = results["rows"]
    assert [(row["fetch"], row["parse"]) for row in rows] == [
        ("threads", "inline"),
        ("sequential", "inline"),
    ]
    assert [row["ceiling"] for row in rows] == [16 * 200, 200]
    for row in rows:
        assert row["failure"] is None
        assert len(row["runs"]) == 1
        median = row["median"]
        assert median["pages"] == 20
        assert median["errors"] == 0
        for figure in ("pages_per_s", "wall_s", "cpu_s", "tree_rss_mb", "largest_rss_mb"):
            assert median[figure] > 0, figure
        assert row["share_pct"] > 0
    out = capsys.readouterr()
    assert "threads" in out.out
    assert "sequential" in out.out
    chart = tmp_path / "bench.png"
    if has_matplotlib:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not chart.exists()
        assert "pip install -e '.[plot]'" in out.err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_a_crawl_past_its_timeout_is_killed_with_its_tree_and_its_row_failed(tmp_path):
    before = _descendants(os.getpid())

    status = main(
        [
            *("--pages", "200", "--latency-ms", "50", "--repeat", "1", "--timeout", "1"),
            *("--fetch", "sequential", "--parse", "processes", "--output", str(tmp_path)),
        ]
    )

    assert status == 1
    assert _descendants(os.getpid()) <= before, "the killed crawl left a process behind"
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert row["failure"] == "timed out after 1 s"
    assert row["median"] is None
