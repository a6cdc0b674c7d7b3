"""Generate the configuration reference (every flag and environment variable) as Markdown.

Knobs of a nested group (a core's config model, see ``services.common.settings``) are listed under
their flat names, the group's prefix included (``--locate-min-stations``, ``EEW_LOCATE_MIN_STATIONS``),
their group named in the meaning (``--group.knob-name`` works too); a core field that is no setting
(``not_a_setting``) is not listed.

``python -m services.common.config_doc`` prints it (``--write`` updates README.md in place); README.md embeds the same text between the
``<!-- config:begin -->`` and ``<!-- config:end -->`` markers, and a unit test keeps them equal.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic_settings import BaseSettings

from services.common.settings import knobs

# Defaults that are paths inside the checkout are shown relative to it, so the reference does
# not depend on where the repository was cloned.
REPO_ROOT = Path(__file__).resolve().parents[2]

# (command, "module:Class") in the order the README lists them.
SETTINGS: list[tuple[str, str]] = [
    ("eew broker", "services.broker.settings:BrokerSettings"),
    ("eew ingest", "services.ingest.settings:IngestSettings"),
    ("eew replay", "services.ingest.settings:ReplaySettings"),
    ("eew detect", "services.detector.settings:DetectorSettings"),
    ("eew alert", "services.alerting.settings:AlertingSettings"),
    ("eew demo", "services.demo.__main__:DemoSettings"),
    ("eew validate", "services.validate.__main__:ValidateSettings"),
    ("eew dashboard", "services.dashboard.settings:DashboardSettings"),
]


def _load(path: str) -> type[BaseSettings]:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _default(default: object) -> str:
    if default is None or str(default) == "PydanticUndefined":
        return "—"
    if isinstance(default, Path) and default.is_absolute():
        try:
            default = default.resolve().relative_to(REPO_ROOT)
        except ValueError:
            pass
    text = str(default)
    return f"`{text}`" if text else "`\"\"`"


def render() -> str:
    out: list[str] = []
    for command, path in SETTINGS:
        cls = _load(path)
        prefix = cls.model_config.get("env_prefix", "")
        out.append(f"#### `{command}`\n")
        out.append("| flag | environment | default | meaning |")
        out.append("|---|---|---|---|")
        for knob in knobs(cls):
            desc = (knob.field.description or "").replace("|", "\\|").replace("\n", " ")
            if knob.group:
                desc = f"({knob.group}) {desc}"
            out.append(f"| `{knob.flag}` | `{knob.env(prefix)}` | {_default(knob.default)} | {desc} |")
        out.append("")
    return "\n".join(out)


def write_readme(readme: Path = REPO_ROOT / "README.md") -> bool:
    """Replace the generated section of README.md in place; return True if it changed."""
    text = readme.read_text()
    begin, end = "<!-- config:begin -->\n", "\n<!-- config:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    new = text[:i] + render().rstrip() + text[j:]
    if new == text:
        return False
    readme.write_text(new)
    return True


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv[1:]:
        print("README.md updated" if write_readme() else "README.md already current")
    else:
        print(render())
