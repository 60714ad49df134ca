"""The benchmark run's Markdown: kept as a file and spliced into the README's marked section."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eval.bench import report, run_all

ROOT = Path(__file__).resolve().parents[2]
README = f"# Title\n\nintro\n\n{report.START_MARK}\n\nold figures\n\n{report.END_MARK}\n\nafter\n"


@pytest.mark.unit
def test_splice_replaces_only_the_marked_section_and_can_run_again() -> None:
    once = report.splice(README, "| a | b |\n|---|---|\n| 1 | 2 |\n")
    twice = report.splice(once, "new run\n")

    assert "old figures" not in once
    assert once.startswith("# Title\n\nintro\n\n")
    assert once.endswith(f"{report.END_MARK}\n\nafter\n")
    assert f"{report.START_MARK}\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n{report.END_MARK}" in once
    assert "| 1 | 2 |" not in twice and "new run" in twice
    assert twice.count(report.START_MARK) == twice.count(report.END_MARK) == 1


@pytest.mark.unit
@pytest.mark.parametrize(
    "document",
    [
        "# no markers\n",
        f"{report.START_MARK}\nonly the start\n",
        f"{report.END_MARK}\n{report.START_MARK}\nreversed\n",
        f"{report.START_MARK}\n{report.START_MARK}\n{report.END_MARK}\ntwice\n",
    ],
)
def test_splice_refuses_a_readme_without_one_ordered_pair_of_markers(document: str) -> None:
    with pytest.raises(ValueError, match="make bench"):
        report.splice(document, "figures")


@pytest.mark.unit
def test_machine_line_names_the_date_and_the_machine() -> None:
    line = report.machine_line()

    assert "UTC" in line and f"{os.cpu_count()} CPUs" in line and "GiB" in line


def test_run_all_writes_the_report_and_the_readme_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run_all, "BENCHMARKS", ("bench_does_not_exist",))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    out = tmp_path / "bench" / "latest.md"

    status = run_all.main(["--quick", "--out", str(out), "--readme", str(readme)])

    written = out.read_text()
    assert status == 0
    assert "bench_does_not_exist: not present in eval/bench, skipped" in written
    assert "| bench_does_not_exist | missing | – |" in written
    assert "Measured " in written and " UTC" in written
    text = readme.read_text()
    assert "old figures" not in text
    assert report.blocks(written)["bench_does_not_exist"] in text
    assert text.startswith("# Title\n\nintro\n\n") and text.endswith("after\n")
    assert "bench_does_not_exist: not present" in capsys.readouterr().out


@pytest.mark.unit
def test_a_run_of_some_benchmarks_keeps_the_blocks_of_the_others() -> None:
    first = (
        "<!-- -m eval.bench.bench_a -->\n\nMeasured day 1.\n\n| a | 1 |\n\n> bench_a: ok in 1 s.\n"
        "<!-- -m eval.bench.bench_b --quick -->\n\nMeasured day 1.\n\n| b | 1 |\n\n"
        "**Benchmark runs**\n\n| bench_a | ok | 1 s |\n"
    )
    rerun_b = "**Benchmarks.**\n\n<!-- -m eval.bench.bench_b -->\n\nMeasured day 2.\n\n| b | 2 |\n"
    once = report.splice(README, report.merged_section(README, first, ["bench_a", "bench_b"]))
    twice = report.splice(once, report.merged_section(once, rerun_b, ["bench_a", "bench_b"]))

    assert set(report.blocks(once)) == {"bench_a", "bench_b"}
    assert "**Benchmark runs**" not in once  # the run's summary stays in its own report
    assert "| a | 1 |" in twice and "| b | 2 |" in twice and "| b | 1 |" not in twice
    assert twice.index("bench_a") < twice.index("bench_b")  # the given order
    assert report.blocks(twice)["bench_b"].endswith("| b | 2 |")


def test_run_all_leaves_a_readme_without_markers_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_all, "BENCHMARKS", ("bench_does_not_exist",))
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")

    with pytest.raises(ValueError, match="make bench"):
        run_all.main(["--quick", "--readme", str(readme)])
    assert readme.read_text() == "# no markers\n"


@pytest.mark.unit
def test_the_project_readme_has_the_generated_section() -> None:
    text = (ROOT / "README.md").read_text()

    assert text.count(report.START_MARK) == 1 and text.count(report.END_MARK) == 1
    assert text.index(report.START_MARK) < text.index(report.END_MARK)


@pytest.mark.unit
def test_a_block_without_its_own_date_takes_its_runs() -> None:
    line = report.machine_line()
    run = f"**Benchmarks.** Measured {line}. Load 2.\n\n<!-- -m eval.bench.bench_a -->\n\n| a |\n"

    block = report.blocks(run)["bench_a"]

    assert block == f"<!-- -m eval.bench.bench_a -->\n\nMeasured {line}.\n\n| a |"
    assert report.blocks(block) == {"bench_a": block}  # dated once
