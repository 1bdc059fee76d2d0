"""What the CLI shows: the skill table in recipe order with units in their own column, the progress reporter."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress

from upscale.cli.display import RichReporter, _skill_table


def render(table) -> str:
    console = Console(width=100, record=True)
    console.print(table)
    return console.export_text()


def test_skill_table_lists_targets_in_recipe_order_with_units():
    cv = {"et": {"r2": 0.75, "nse": 0.7}, "gpp": {"r2": 0.88, "nse": 0.87}}
    rows = [line.split() for line in render(_skill_table(cv, ["gpp", "et"])).splitlines()]
    rows = [row for row in rows if row and row[0] in ("gpp", "et")]
    assert [row[0] for row in rows] == ["gpp", "et"]
    assert rows[0][1:4] == ["g", "m-2", "d-1"] and rows[1][1:4] == ["kg", "m-2", "d-1"]
    text = " ".join(" ".join(row) for row in rows)
    assert "g m-2 d-1" in text and "kg m-2 d-1" in text and "0.88" in text


def test_reporter_advances_and_completes_its_bars():
    with Progress(console=Console(file=open("/dev/null", "w"))) as progress:
        reporter = RichReporter(progress)
        advance = reporter.progress("tiles", 4)
        advance()
        assert progress.tasks[0].completed == 1
        reporter.done("tiles")
        assert progress.tasks[0].completed == 4
