"""The configuration reference is generated from Settings and leaves no setting out."""

from __future__ import annotations

from core.settings import Settings
from scripts.config_reference import meaning, table


def test_every_setting_is_documented() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not meaning(n, f)]
    assert undocumented == []


def test_the_table_lists_every_variable_and_no_secret_default() -> None:
    out = table()
    for name in Settings.model_fields:
        assert f"`COACHPAY_{name.upper()}`" in out
    assert "coachpay-dev-secret" not in out and "whsec_" not in out
    assert "| `COACHPAY_DB_POOL_SIZE` | `10` | integer, >= 1, <= 200 |" in out
    assert "`development` / `production`" in out


def test_the_readme_shows_the_generated_table() -> None:
    from tests.dbutil import ROOT

    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    shown = readme[readme.index(start) + len(start) : readme.index(end)]
    assert shown.strip() == table().strip(), "run: uv run python -m scripts.config_reference"
