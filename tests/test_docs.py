"""The README keeps its promises: the two commands first, every setting documented."""

from __future__ import annotations

import pytest

from rag.settings import settings_markdown
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.unit

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands() -> None:
    head = README[:400]
    assert "make run" in head and "make test" in head


def test_configuration_table_matches_the_settings() -> None:
    start = README.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = README.index("<!-- settings-table:end -->")
    assert README[start:end].strip() == settings_markdown().strip(), (
        "README configuration table is stale: regenerate it with `rag settings --markdown`"
    )


def test_ci_calls_the_readme_test_command() -> None:
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text()
