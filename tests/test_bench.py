"""scrape bench: the pure figures, option parsing, and one real small bench end to end."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from processes import RUN_TIMEOUT, running, scrape, scrape_command, wait_for

from scraper import config
from scraper.bench import command, main
from scraper.bench.figures import (
    SCENARIOS,
    Figures,
    RunResult,
    Scenario,
    ceiling_share,
    io_ceiling,
    median_figures,
    parse_names,
    resolve_scenario,
    summarize,
)
from scraper.bench.processes import demo_server
from scraper.bench.report import bench_command, chart_width, results_markdown, results_table
from scraper.bench.runs import crawl_argv
from scraper.demo import SiteSpec

IO = Scenario("io", latency_ms=50, pages=300, page_kb=4, workers=16, fanout=16)


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
    mixed = resolve_scenario("mixed", pages=7, latency_ms=0.0, fanout=2)
    assert (mixed.pages, mixed.latency_ms, mixed.fanout) == (7, 0, 2)
    assert (mixed.page_kb, mixed.workers) == (
        SCENARIOS["mixed"].page_kb,
        SCENARIOS["mixed"].workers,
    )


def test_scenarios_are_as_documented():
    assert SCENARIOS["io"].latency_ms == 50
    assert SCENARIOS["cpu"].latency_ms == 0
    assert SCENARIOS["cpu"].page_kb >= 64
    assert 0 < SCENARIOS["mixed"].latency_ms < SCENARIOS["io"].latency_ms
    # the io site's root links enough pages to busy every worker; the others are the default
    assert SCENARIOS["io"].fanout >= SCENARIOS["io"].workers
    assert SCENARIOS["cpu"].fanout == SCENARIOS["mixed"].fanout == SiteSpec.fanout


def test_the_bench_serves_the_scenarios_fanout() -> None:
    scenario = Scenario("io", latency_ms=0, pages=40, page_kb=4, workers=16, fanout=16)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with demo_server(scenario) as url, opener.open(url, timeout=30) as root:
        linked = {int(n) for n in re.findall(rb'href="[^"]*page/(\d+)[#"]', root.read())}
    assert set(range(1, 17)) <= linked


def test_parse_names_keeps_order_drops_repeats_and_blanks():
    known = ("threads", "sequential", "async")
    assert parse_names(" async, threads,,async ", known, "fetch strategy") == ("async", "threads")


@pytest.mark.parametrize("text", ["threads,bogus", "", " , "])
def test_parse_names_rejects_unknown_or_no_names(text):
    with pytest.raises(ValueError, match="choose from threads, sequential"):
        parse_names(text, ("threads", "sequential"), "fetch strategy")


@pytest.mark.parametrize(
    "argv",
    [
        ["--timeout", "inf"],
        ["--timeout", "nan"],
        ["--page-kb", "99999999"],
        ["--latency-ms", "1e308"],
    ],
)
def test_values_that_would_never_end_a_crawl_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "must be at" in capsys.readouterr().err


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


MACHINE = {"cpus": 8, "python": "3.12.1", "platform": "Linux-6.1-x86_64"}


def row(scenario, fetch, pages_per_s, *, parse="inline", failure=None):
    """A combination's row: one repeat at `pages_per_s`, or none finished when it is None."""
    figures_ = None if pages_per_s is None else figures(pages_per_s)
    return summarize(scenario, fetch, parse, [RunResult(fetch, parse, 1, figures_, failure)])


def markdown(scenario, rows, *, repeat=1, timeout=300.0):
    return results_markdown(scenario, rows, repeat=repeat, timeout=timeout, machine=MACHINE)


def table_lines(text):
    return [line for line in text.splitlines() if line.startswith("|")]


def mermaid_lines(text):
    """The lines inside the ```mermaid block."""
    start = text.index("```mermaid\n") + len("```mermaid\n")
    return text[start : text.index("\n```", start)].splitlines()


def series(text, kind):
    """The numbers of the chart's `bar` or `line` series, or None without one."""
    found = [line.split(None, 1)[1] for line in mermaid_lines(text) if line.split()[0] == kind]
    assert len(found) <= 1
    return [float(value) for value in found[0].strip("[]").split(",")] if found else None


def test_bench_command_names_only_what_differs_from_the_defaults():
    rows = [
        row(IO, fetch, 10, parse=parse)
        for fetch in config.FETCH_STRATEGIES
        for parse in config.PARSE_MODES
    ]
    assert (
        bench_command(SCENARIOS["io"], rows, repeat=3, timeout=300) == "scrape bench --scenario io"
    )
    mixed = resolve_scenario("mixed", pages=7, latency_ms=2.5, fanout=9, frontier="memory")
    some = [row(mixed, "async", 10, parse="threads"), row(mixed, "threads", 10, parse="threads")]
    assert bench_command(mixed, some, repeat=1, timeout=20) == (
        "scrape bench --scenario mixed --latency-ms 2.5 --pages 7 --fanout 9 --frontier memory "
        "--fetch async,threads --parse threads --repeat 1 --timeout 20"
    )


def test_markdown_opens_with_the_command_and_the_machine():
    text = markdown(IO, [row(IO, "threads", 150), row(IO, "sequential", 18)], repeat=1)
    first = text.splitlines()[0]
    assert first.startswith(
        "`scrape bench --scenario io --fetch threads,sequential --parse inline --repeat 1` "
    )
    assert "8 CPUs, Python 3.12.1" in first
    assert "300 pages of ~4 KB linking 16 children each, 50 ms latency, 16 workers" in first


def test_markdown_table_has_the_terminal_header_and_one_line_per_row():
    rows = [row(IO, "threads", 150), row(IO, "async", 160), row(IO, "sequential", 18)]
    lines = table_lines(markdown(IO, rows))
    terminal = [column.header for column in results_table(IO, rows, 1).columns]
    assert lines[0] == "| " + " | ".join(terminal) + " |"
    assert lines[1].startswith("| :-- | :-- | --: | --: | --: |")
    assert len(lines) == 2 + len(rows)
    assert lines[2].startswith("| threads | inline | 100 | 150.0 | 47% of 320 | 15.00 |")
    assert lines[4].startswith("| sequential | inline | 100 | 18.0 | 90% of 20 |")
    cpu = resolve_scenario("cpu")
    assert "of ceiling" not in table_lines(markdown(cpu, [row(cpu, "threads", 150)]))[0]


def test_a_failed_row_shows_dashes_in_the_table_and_stays_out_of_the_chart():
    rows = [row(IO, "threads", 150), row(IO, "async", None, failure="exit 3: [a|b]")]
    text = markdown(IO, rows)
    failed = table_lines(text)[3]
    assert failed == "| async | inline | — | — | — | — | — | — | — | — | failed: exit 3: [a\\|b] |"
    assert series(text, "bar") == [150.0]
    assert '"async / inline"' not in text
    assert "```mermaid" not in markdown(IO, [rows[1]])


def test_the_chart_is_a_horizontal_xychart_of_each_rows_pages_per_s():
    rows = [row(IO, "threads", 151.26), row(IO, "async", 160, parse="processes")]
    text = markdown(IO, rows)
    chart = mermaid_lines(text)
    assert chart[0] == "xychart-beta horizontal"
    assert '"threads / inline", "async / processes"]' in text
    assert series(text, "bar") == [pytest.approx(r.median.pages_per_s, abs=0.05) for r in rows]
    (axis,) = [line for line in chart if line.split()[0] == "y-axis"]
    assert axis.endswith(" 0 --> 320")  # bars start at zero; the ceiling fits


def test_the_chart_has_each_rows_ceiling_as_a_line_only_with_latency():
    rows = [row(IO, "threads", 150), row(IO, "sequential", 18)]
    assert series(markdown(IO, rows), "line") == [320, 20]
    cpu = resolve_scenario("cpu")
    assert series(markdown(cpu, [row(cpu, "threads", 150)]), "line") is None


def test_the_table_writes_a_ceiling_in_full():
    """A huge --workers wrote "0% of 2e+06"."""
    many = Scenario("io", latency_ms=50, pages=300, page_kb=4, workers=100_000, fanout=16)
    assert table_lines(markdown(many, [row(many, "threads", 150)]))[-1].count("0% of 2,000,000")


def test_the_charts_axis_ends_past_the_bars_and_the_ceilings_near_them():
    """A ceiling far beyond the bars (16,000 at 1 ms, bars of 250) had every bar squeezed
    into the first few percent: it is written at the axis's end instead of drawn."""
    near = [row(IO, "threads", 200), row(IO, "sequential", 18)]  # ceilings 320 and 20
    assert chart_width(near) == pytest.approx(320 * 1.05)
    fast = Scenario("io", latency_ms=1, pages=300, page_kb=4, workers=16, fanout=16)
    far = [row(fast, "threads", 250)]  # ceiling 16,000
    assert chart_width(far) == pytest.approx(250 * 1.4)


def test_a_crawl_may_take_pages_as_large_as_the_bench_serves(tmp_path):
    """--page-kb 60000 failed every page: too_large, past the crawl's default 50 MiB."""
    big = Scenario("cpu", latency_ms=0, pages=2, page_kb=60_000, workers=1, fanout=1)
    argv = crawl_argv(big, "threads", "inline", tmp_path / "list.txt", tmp_path / "out")
    assert int(argv[argv.index("--max-bytes") + 1]) >= 60_000 * 1024 * 1.2


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
        "fanout": 16,
        "frontier": "sqlite",
    }
    assert results["machine"]["cpus"] == config.usable_cpus()
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
    bench_md = (tmp_path / "bench.md").read_text()
    assert bench_md.startswith(
        "`scrape bench --scenario io --latency-ms 5 --pages 20 --fetch threads,sequential "
        "--parse inline --repeat 1` "
    )
    assert len(table_lines(bench_md)) == 2 + len(rows)
    assert series(bench_md, "bar") == [round(row["median"]["pages_per_s"], 1) for row in rows]
    assert "markdown:" in out.err
    chart = tmp_path / "bench.png"
    if has_matplotlib:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not chart.exists()
        assert "pip install matplotlib" in out.err
    assert results["interrupted"] is False


TINY_BENCH = (
    *("--scenario", "io", "--pages", "10", "--latency-ms", "5", "--repeat", "1"),
    *("--fetch", "threads", "--parse", "inline"),
)


@contextlib.contextmanager
def unwritable(kind: str) -> Iterator[int]:
    """A descriptor whose writes fail: a pipe nobody reads (`| head`), or a full disk."""
    if kind == "full disk":
        with open("/dev/full", "wb") as full:
            yield full.fileno()
        return
    reading, writing = os.pipe()
    os.close(reading)
    try:
        yield writing
    finally:
        os.close(writing)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
@pytest.mark.parametrize(("stream", "kind"), [("stdout", "closed pipe"), ("stderr", "full disk")])
def test_output_that_cannot_be_written_costs_the_bench_its_messages_not_its_results(
    tmp_path, stream, kind
):
    """`scrape bench | head`: rich met the closed pipe with SystemExit(1), as the table was
    printed and before results.json, the chart and bench.md were written. `2>/dev/full`
    ended the bench at its first progress line, in a traceback nobody could read."""
    with unwritable(kind) as descriptor:
        done = scrape(tmp_path, "bench", *TINY_BENCH, "-o", str(tmp_path), **{stream: descriptor})
    assert done.returncode == 120, done.stderr  # as Python's exit says for a lost message
    assert "Traceback" not in (done.stderr or "")
    assert [
        row["median"]["pages"]
        for row in json.loads((tmp_path / "results.json").read_text())["rows"]
    ] == [10]
    assert (tmp_path / "bench.md").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_the_table_on_a_file_is_whole_whatever_rich_is_told(tmp_path, capsys, monkeypatch):
    """FORCE_COLOR (common in CI) made rich take a file for a terminal, 80 columns wide:
    the headers were cut short."""
    monkeypatch.setenv("FORCE_COLOR", "1")

    main([*TINY_BENCH, "--output", str(tmp_path)])

    assert "largest MB" in capsys.readouterr().out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_results_that_cannot_be_written_exit_2_and_still_show_the_table(tmp_path, capsys):
    (tmp_path / "bench.md").mkdir()  # where the last file would go

    status = main([*TINY_BENCH, "--output", str(tmp_path)])

    assert status == 2
    out = capsys.readouterr()
    assert f"results: {tmp_path / 'results.json'}" in out.err  # what was written is said
    assert "cannot write the results" in out.err
    assert "bench.md" in out.err.splitlines()[-1]  # and which one could not be
    assert "threads" in out.out  # the table: the run's figures are not lost with the files


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_an_output_directory_that_cannot_be_written_ends_the_bench_before_it_starts(capsys):
    """Found after the last crawl, it cost the whole bench."""
    before = _descendants(os.getpid())
    assert main([*TINY_BENCH, "--output", "/proc/sys"]) == 2
    assert "scrape bench: error: cannot write in /proc/sys" in capsys.readouterr().err
    assert _descendants(os.getpid()) <= before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_proxies_in_the_environment_are_not_the_benchs(tmp_path, monkeypatch):
    """The site is on 127.0.0.1: through the proxy the environment named, every crawl
    failed (or, with one listening, the bench measured the proxy)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("all_proxy", "http://127.0.0.1:9")
    assert main([*TINY_BENCH, "--output", str(tmp_path)]) == 0
    (result,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert result["median"]["pages"] == 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_without_matplotlib_an_earlier_chart_is_removed(tmp_path, capsys, monkeypatch):
    """Left beside the new results, it showed an earlier run's figures."""
    (tmp_path / "bench.png").write_bytes(b"an earlier run's chart")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # its import fails
    assert main([*TINY_BENCH, "--output", str(tmp_path)]) == 0
    assert not (tmp_path / "bench.png").exists()
    assert "not drawn: matplotlib is not installed (pip install matplotlib)" in (
        capsys.readouterr().err
    )


SLOW_BENCH = (
    *("--scenario", "io", "--pages", "30", "--latency-ms", "50", "--repeat", "3"),
    *("--fetch", "sequential", "--parse", "inline"),
)


def _start_bench(tmp_path) -> tuple[subprocess.Popen[str], set[int]]:
    """`scrape bench` on a slow site, once its first crawl has finished: the process, and
    its descendants then (the demo site, the next crawl)."""
    bench = subprocess.Popen(
        [
            *scrape_command("bench", *SLOW_BENCH, "-o", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert bench.stderr is not None
    assert "repeat 1:" in bench.stderr.readline()
    return bench, _descendants(bench.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_bench_told_to_end_stops_its_crawl_and_site_and_keeps_what_it_measured(tmp_path, signum):
    """Killed by SIGTERM (or SIGHUP, its terminal closed), it left the demo site and the
    crawl under way running, and nothing of what it had measured."""
    bench, started = _start_bench(tmp_path)
    try:
        bench.send_signal(signum)
        _, err = bench.communicate(timeout=RUN_TIMEOUT)
    finally:
        bench.kill()
    assert bench.returncode == 130
    assert "scrape bench: interrupted; the finished crawls follow" in err
    assert not any(running(pid) for pid in started), "a process of the bench was left running"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["interrupted"] is True
    assert [len(row["runs"]) for row in results["rows"]] == [1]
    bench_md = (tmp_path / "bench.md").read_text()
    assert bench_md.startswith(  # as asked, not as far as it came
        "`scrape bench --scenario io --pages 30 --fetch sequential --parse inline` "
    )
    assert "median of up to 3, interrupted: the crawls that finished." in bench_md


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_the_demo_site_and_the_crawl_end_with_a_bench_killed_outright(tmp_path):
    """The crawl, in a session of its own, went on against a site gone with the bench."""
    bench, started = _start_bench(tmp_path)
    try:
        bench.kill()
        bench.communicate()
        assert wait_for(lambda: not any(running(pid) for pid in started), RUN_TIMEOUT)
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_a_bench_runs_from_a_thread_other_than_the_main_one(tmp_path):
    """Only the main thread may install signal handlers: the bench raised ValueError."""
    status: list[int] = []
    runner = threading.Thread(
        target=lambda: status.append(main([*TINY_BENCH, "-o", str(tmp_path)]))
    )
    runner.start()
    runner.join()
    assert status == [0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_a_bench_interrupted_before_any_crawl_removes_the_results_of_an_earlier_one(
    tmp_path, capsys, monkeypatch
):
    """Left as they were, unmarked, they passed for this bench's."""
    for name in ("results.json", "bench.md", "bench.png"):
        (tmp_path / name).write_text("an earlier bench's")

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # as the demo site starts

    monkeypatch.setattr("scraper.bench.runs.demo_server", interrupted)
    assert main([*TINY_BENCH, "-o", str(tmp_path)]) == 130
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert "scrape bench: interrupted" in err
    assert "results.json, bench.png, bench.md removed" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bench needs Linux")
def test_a_signal_while_the_results_are_written_waits_for_all_of_them(
    tmp_path, capsys, monkeypatch
):
    """One that came between them left results.json of this run beside bench.md of
    another."""
    (tmp_path / "bench.md").write_text("an earlier bench's")
    draw = command.write_chart

    def terminated_meanwhile(*args: Any) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)
        return draw(*args)

    monkeypatch.setattr("scraper.bench.command.write_chart", terminated_meanwhile)
    assert main([*TINY_BENCH, "-o", str(tmp_path)]) == 130
    assert (tmp_path / "bench.md").read_text().startswith("`scrape bench")
    assert json.loads((tmp_path / "results.json").read_text())["rows"]
    out = capsys.readouterr()
    assert "threads" in out.out  # the table: it ended silently
    assert "scrape bench: interrupted" in out.err


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read()
    except OSError:
        return b""
