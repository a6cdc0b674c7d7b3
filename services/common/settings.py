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
    keyword ``SvcSettings(max_gap_s=...)``; pydantic-settings' nested forms (``--core.max-gap-s``,
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
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field
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


@dataclass(frozen=True)
class Knob:
    """One setting as users see it: flat ``name``, the ``group`` it lives in ("" for top level)."""

    name: str
    group: str
    field: FieldInfo
    default: Any  # the value when nothing sets it (a group's own default instance decides)

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
            for sub, subfield in nested[name].model_fields.items():
                yield Knob(sub, name, subfield, getattr(field.default, sub, subfield.default))
        else:
            yield Knob(name, "", field, field.default)


class _FlatGroupEnv(PydanticBaseSettingsSource):
    """``EEW_<KNOB>`` for the knobs of every nested group (parsed as pydantic-settings parses env)."""

    def __init__(self, settings_cls: type[BaseSettings], like: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self.like = like

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group, model in groups(self.settings_cls).items():
            src = EnvSettingsSource(
                model,  # type: ignore[arg-type]  # any BaseModel: only its fields and config are read
                case_sensitive=self.like.case_sensitive,
                env_prefix=self.like.env_prefix,
                env_parse_none_str=self.like.env_parse_none_str,
            )
            values = src()
            if values:
                out[group] = values
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
        owner = {k.name: k.group for k in knobs(settings_cls) if k.group}
        for name in [n for n in kwargs if n in owner]:
            group = kwargs.get(owner[name], {})
            group = dict(group.model_dump() if isinstance(group, BaseModel) else group)
            group[name] = kwargs.pop(name)
            kwargs[owner[name]] = group
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
    return {f"{k.group}.{k.name}".replace("_", "-"): k.name.replace("_", "-") for k in knobs(cls) if k.group}


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
