"""docs/design.md shows the diagrams scripts/state_diagrams.py generates from the tables."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.state_diagrams import MACHINES, diagram, diagrams

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"


def test_design_doc_diagrams_are_the_generated_ones() -> None:
    text = DESIGN.read_text()
    in_doc = re.findall(r"```mermaid\n.*?```", text, flags=re.S)
    # Every machine's block appears verbatim, and no stale hand-drawn block is left.
    assert sorted(in_doc) == sorted(diagrams().values())


def test_the_readme_shows_the_generated_diagrams() -> None:
    text = (ROOT / "README.md").read_text()
    in_readme = re.findall(r"```mermaid\n.*?```", text, flags=re.S)
    assert sorted(in_readme) == sorted(diagrams().values())


def test_a_diagram_has_every_edge_of_its_table() -> None:
    for machine in MACHINES:
        out = diagram(machine)
        for a, targets in machine.allowed.items():
            for b in targets:
                assert f"    {a} --> {b}\n" in out + "\n"
        for s in machine.initial:
            assert f"[*] --> {s}" in out
