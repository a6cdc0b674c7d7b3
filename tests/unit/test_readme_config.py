"""README's configuration reference is the generated one (every flag and env var, current)."""

from pathlib import Path

from services.common.config_doc import render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_reference_is_current() -> None:
    text = README.read_text()
    begin, end = "<!-- config:begin -->\n", "\n<!-- config:end -->"
    embedded = text[text.index(begin) + len(begin) : text.index(end)]
    assert embedded == render().rstrip(), "regenerate: python -m services.common.config_doc"


def test_readme_has_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == "make test"
