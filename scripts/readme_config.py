"""Write the generated configuration reference into README.md between its markers.

``uv run python -m scripts.readme_config``; tests/test_config_reference.py fails
while the README's table differs from ``scripts.config_reference.table()``.
"""

from __future__ import annotations

from pathlib import Path

from scripts.config_reference import table

START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "README.md"
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + START + table().rstrip("\n") + "\n" + END + tail)


if __name__ == "__main__":
    main()
