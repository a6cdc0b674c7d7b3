"""Settings shared by every service, and the loader that reads flags and environment.

The pattern (one declaration per knob)
    A pure core declares its knobs once, as a frozen pydantic model deriving from ``CoreModel``:
    type, default, ``description`` and validation (``Field`` constraints, a ``model_validator``
    for cross-field rules) live in that one place. The core takes that model; nothing mirrors it.

    A service declares one frozen settings class deriving from ``ServiceSettings``: its own
    knobs (topics, ports, timeouts) as fields, and each core model it configures as a *nested
    group*, a field whose type is the model::

        class CoreConfig(CoreModel):                   # services/<svc>/core.py
            max_gap_s: float = Field(20.0, gt=0, description="...")

        class SvcSettings(ServiceSettings):            # services/<svc>/settings.py
            group_id: str = Field("eew-svc", description="...")
            core: CoreConfig = Field(CoreConfig(), description="...")   # an instance, no factory

        settings.core                                  # the core's config, as is

    A group's knobs keep flat names: flag ``--max-gap-s``, environment ``EEW_MAX_GAP_S`` and
    keyword ``SvcSettings(max_gap_s=...)``. A group declared with ``group(..., prefix="locate_")``
    puts that prefix before its knobs' flat names (``LocatorConfig.min_stations`` is
    ``--locate-min-stations``, ``EEW_LOCATE_MIN_STATIONS``, ``locate_min_stations=``), and
    ``names={"field": "flat_name"}`` gives single knobs another flat name (one kept from before the
    group existed). A core field marked ``not_a_setting()`` (a value the service derives at start,
    such as parsed tokens or a key file's bytes, or a constant of the method) is no knob: no flat
    name, not read from the environment. pydantic-settings' nested forms (``--core.max-gap-s``,
    ``--core '{"max_gap_s": 12}'``, ``EEW_CORE='{...}'``) work too. So a flat name must be unique
    across the service's own fields and all its groups (checked when the class is defined), and
    groups are one level deep. A group's default is an instance (``Field(CoreConfig(max_past_s=0),
    ...)`` may differ per service); a flag or variable overrides one knob of it and keeps the rest.
    ``config_doc`` lists every knob under its flat name with the service's default.

    A core whose configuration also holds facts that are no settings (the detector's model
    contract) splits it: the settings group holds the knobs, and a subclass adds the facts
    (``services.detector.core.CoreConfig(CoreTuning)``), built with ``core_model.model_dump()``
    and the facts, never field by field.

Environment variables are ``EEW_<FIELD>`` (upper case); flags are ``--field-name``; precedence:
flags, then keyword overrides, then environment, then defaults.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

T = TypeVar("T", bound="ServiceSettings")


class CoreModel(BaseModel):
    """Base of a pure core's configuration: frozen, unknown names refused, validated on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated again (``dataclasses.replace`` for models)."""
        return type(self).model_validate({**self.model_dump(), **changes})


NOT_A_SETTING = "eew_not_a_setting"
GROUP_PREFIX = "eew_flat_prefix"
GROUP_NAMES = "eew_flat_names"


def not_a_setting(default: Any, description: str = "", **kw: Any) -> Any:
    """A core model field that is no knob: derived by the service at start, or a constant of the method."""
    return Field(default, description=description, json_schema_extra={NOT_A_SETTING: True}, **kw)


def group(default: BaseModel, description: str, *, prefix: str = "", names: dict[str, str] | None = None) -> Any:
    """A nested group field whose knobs' flat names get ``prefix`` (``names``: field -> flat name exceptions)."""
    for field in names or {}:
        if field not in type(default).model_fields:
            raise TypeError(f"group {type(default).__name__}: names{{{field!r}}} is no field of it")
    return Field(default, description=description, json_schema_extra={GROUP_PREFIX: prefix, GROUP_NAMES: names or {}})


def _extra(field: FieldInfo, key: str, default: Any = None) -> Any:
    extra = field.json_schema_extra
    return extra.get(key, default) if isinstance(extra, dict) else default


def is_setting(field: FieldInfo) -> bool:
    return not _extra(field, NOT_A_SETTING, False)


def flat_names(group_field: FieldInfo, model: type[BaseModel]) -> dict[str, str]:
    """field -> flat name of a group's knobs (its prefix and name exceptions applied)."""
    prefix, names = _extra(group_field, GROUP_PREFIX, ""), _extra(group_field, GROUP_NAMES, {})
    return {f: names.get(f, prefix + f) for f, info in model.model_fields.items() if is_setting(info)}


@dataclass(frozen=True)
class Knob:
    """One setting as users see it: flat ``name``, the ``group`` it lives in ("" for top level),
    and its ``attr`` (field name) in that group."""

    name: str
    group: str
    field: FieldInfo
    default: Any  # the value when nothing sets it (a group's own default instance decides)
    attr: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def env(self, prefix: str) -> str:
        return f"{prefix}{self.name.upper()}"


def groups(cls: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The nested groups of a settings class: field name -> model class."""
    out: dict[str, type[BaseModel]] = {}
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and not issubclass(ann, BaseSettings):
            out[name] = ann
    return out


def knobs(cls: type[BaseModel]) -> Iterator[Knob]:
    """Every knob of a settings class under its flat name, groups expanded in place."""
    nested = groups(cls)
    for name, field in cls.model_fields.items():
        if name in nested:
            model = nested[name]
            for sub, flat in flat_names(field, model).items():
                subfield = model.model_fields[sub]
                yield Knob(flat, name, subfield, getattr(field.default, sub, subfield.default), sub)
        else:
            yield Knob(name, "", field, field.default)


@cache
def _knobs_only_cached(model: type[BaseModel], fields: tuple[str, ...]) -> type[BaseModel]:
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{model.__name__}Knobs", **{f: (model.model_fields[f].annotation, model.model_fields[f]) for f in fields}
    )


def _knobs_only(model: type[BaseModel], fields: list[str]) -> type[BaseModel]:
    """A model with only ``fields`` of ``model``: the environment source reads (and parses) just those."""
    return _knobs_only_cached(model, tuple(fields))


class _FlatGroupEnv(PydanticBaseSettingsSource):
    """``EEW_<FLAT_NAME>`` for the knobs of every nested group (parsed as pydantic-settings parses env)."""

    def __init__(self, settings_cls: type[BaseSettings], like: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self.like = like

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, model in groups(self.settings_cls).items():
            flat = flat_names(self.settings_cls.model_fields[name], model)
            values: dict[str, Any] = {}
            # One source per distinct prefix (names= exceptions have their own); only knobs are kept.
            prefixes = {field: flat[field].removesuffix(field) for field in flat}
            for prefix in set(prefixes.values()):
                src = EnvSettingsSource(
                    _knobs_only(model, [f for f in flat if prefixes[f] == prefix]),  # type: ignore[arg-type]
                    case_sensitive=self.like.case_sensitive,
                    env_prefix=self.like.env_prefix + prefix.upper(),
                    env_parse_none_str=self.like.env_parse_none_str,
                )
                values.update(src())
            if values:
                out[name] = values
        return out


class ServiceSettings(BaseSettings):
    """Fields every service has; the flat-name handling of nested groups (see the module docstring)."""

    model_config = SettingsConfigDict(
        env_prefix="EEW_", frozen=True, extra="ignore", nested_model_default_partial_update=True
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port list."
    )
    http_host: str = Field("127.0.0.1", description="Address of the /metrics, /healthz and /readyz server.")
    http_port: int = Field(0, description="Port of the metrics/health server (0 picks a free port).")
    log_level: str = Field("INFO", description="Python logging level.")
    client_id: str = Field("eew", description="Kafka client id prefix, shown in broker logs.")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        seen: dict[str, str] = {}
        for k in knobs(cls):
            if k.name in seen:
                raise TypeError(
                    f"{cls.__name__}: setting {k.name!r} of group {k.group or '(top level)'!r} clashes with "
                    f"the one of {seen[k.name] or '(top level)'!r}: flat names must be unique"
                )
            seen[k.name] = k.group
        for k in knobs(cls):
            if k.group and not k.name.endswith(k.attr):
                # The environment is read per prefix (EEW_<prefix><FIELD>): a flat name is prefix + field.
                raise TypeError(f"{cls.__name__}.{k.group}: flat name {k.name!r} must end in its field {k.attr!r}")
        for group, model in groups(cls).items():
            if groups(model):
                raise TypeError(f"{cls.__name__}.{group}: groups are one level deep")
            if not isinstance(cls.model_fields[group].default, model):
                # pydantic-settings merges a partial override (one flag) into a plain default only.
                raise TypeError(f"{cls.__name__}.{group}: give the group a default instance, not a default_factory")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        nested = groups(settings_cls)
        if not nested:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        # Keyword overrides by flat name go into their group.
        assert isinstance(init_settings, InitSettingsSource) and isinstance(env_settings, EnvSettingsSource)
        kwargs = dict(init_settings.init_kwargs)
        owner = {k.name: (k.group, k.attr) for k in knobs(settings_cls) if k.group}
        for name in [n for n in kwargs if n in owner]:
            grp, attr = owner[name]
            value = kwargs.get(grp, {})
            value = dict(value.model_dump() if isinstance(value, BaseModel) else value)
            value[attr] = kwargs.pop(name)
            kwargs[grp] = value
        init = InitSettingsSource(settings_cls, init_kwargs=kwargs)
        return (
            init,
            env_settings,
            _FlatGroupEnv(settings_cls, env_settings),
            dotenv_settings,
            file_secret_settings,
        )


def cli_shortcuts(cls: type[BaseModel]) -> dict[str, str]:
    """``--group.knob-name`` -> ``--knob-name`` for every grouped knob (pydantic-settings' ``cli_shortcuts``)."""
    return {f"{k.group}.{k.attr}".replace("_", "-"): k.name.replace("_", "-") for k in knobs(cls) if k.group}


def load_settings(cls: type[T], argv: Sequence[str] | None = None, **overrides: object) -> T:
    """Build settings from environment, then keyword overrides, then flags (``argv``)."""
    if argv is None:
        argv = []
    obj = cls(
        _cli_parse_args=list(argv),
        _cli_kebab_case=True,
        _cli_prog_name=f"eew {cls.__name__}",
        _cli_shortcuts=cli_shortcuts(cls) or None,
        **overrides,
    )
    return obj
