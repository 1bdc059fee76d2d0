"""The Explanations section of the report, from a fabricated explain/ folder."""

from __future__ import annotations

import pandas as pd

from upscale.explain.summary import CAPTIONS, markdown_section


class Tables:
    """A stand-in for the report's table renderer that keeps the frames it is given."""

    def __init__(self):
        self.frames: list[pd.DataFrame] = []

    def __call__(self, frame: pd.DataFrame) -> list[str]:
        self.frames.append(frame.reset_index(drop=True))
        return [f"<table {len(self.frames)}>"]


def fabricate(root):
    folder = root / "explain"
    (folder / "figures").mkdir(parents=True)
    pd.DataFrame(
        {
            "target": ["gpp", "et", "gpp", "gpp"],
            "predictor": ["tas", "pr", "pr", "pft"],
            "kind": "dynamic",
            "nse_base": 0.8,
            "nse_drop": [0.1, 0.3, 0.5, 0.2],
            "nse_drop_sd": 0.01,
        }
    ).to_csv(folder / "importance.csv", index=False)
    pd.DataFrame(
        {
            "target": "gpp",
            "predictor": "all",
            "group_by": ["all", "aridity", "igbp", "site"],
            "group": ["all", "dry", "ENF", "S1"],
            "nse_memory": [0.1, 0.2, 0.3, 0.4],
        }
    ).to_csv(folder / "memory_summary.csv", index=False)
    pd.DataFrame(
        {
            "variable": ["cwd", "cwd", "tas"],
            "group": "all",
            "fold": 0,
            "member": 0,
            "cell": [1, 2, 3],
            "r_median": [0.5, -0.9, 0.2],
            "r_pooled": 0.0,
        }
    ).to_csv(folder / "cell_states.csv", index=False)
    for name in ("memory.png", "importance.png"):
        (folder / "figures" / name).write_bytes(b"png")
    return folder


def test_no_explain_folder_no_section(tmp_path):
    assert markdown_section(tmp_path, Tables()) == []


def test_section_of_a_fabricated_folder(tmp_path):
    fabricate(tmp_path)
    tables = Tables()
    lines = markdown_section(tmp_path, tables)
    assert lines[0] == "## Explanations"
    headings = [line for line in lines if line.startswith("### ")]
    assert headings == [
        "### Permutation importance (loss of NSE)",
        "### Memory (skill with the full history minus skill with k = 0 days intact)",
        "### Cell states (strongest cell per variable, median r over sites)",
    ]
    importance, memory, cells = tables.frames
    assert list(importance.columns) == ["target", "predictor", "nse_base", "nse_drop", "nse_drop_sd"]
    assert list(zip(importance.target, importance.predictor)) == [
        ("et", "pr"),
        ("gpp", "pr"),
        ("gpp", "pft"),
        ("gpp", "tas"),
    ]
    assert memory.group_by.tolist() == ["all", "aridity"]
    assert list(zip(cells.variable, cells.cell)) == [("cwd", 2), ("tas", 3)]  # by |r|, one per variable
    assert "<table 3>" in lines
    figures = [line for line in lines if line.startswith("![")]
    assert figures == [
        "![importance.png](../explain/figures/importance.png)",
        "![memory.png](../explain/figures/memory.png)",
    ]  # in the order of CAPTIONS
    assert f"**memory.png**: {CAPTIONS['memory.png']}." in lines


def test_missing_tables_are_left_out(tmp_path):
    folder = fabricate(tmp_path)
    (folder / "importance.csv").unlink()
    (folder / "memory_summary.csv").unlink()
    pd.DataFrame(columns=["variable", "group", "fold", "member", "cell", "r_median", "r_pooled"]).to_csv(
        folder / "cell_states.csv", index=False
    )  # a model without cells
    tables = Tables()
    lines = markdown_section(tmp_path, tables)
    assert tables.frames == [] and not [line for line in lines if line.startswith("### ")]
    assert "![memory.png](../explain/figures/memory.png)" in lines
