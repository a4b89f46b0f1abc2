"""Typed settings, built once at the entry point: defaults < config file < RECO_* env < flags."""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Collection, Literal

try:
    from tomllib import TOMLDecodeError
except ModuleNotFoundError:  # Python 3.10: pydantic-settings reads TOML with tomli
    from tomli import TOMLDecodeError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError,
                               TomlConfigSettingsSource)

from online_models.config import Blend, EngineConfig, Variant
from online_models.state.pseudonyms import Pseudonyms


class VariantSettings(BaseModel):
    """One A/B variant: a plain model (no environment of its own: `EXPLORE=…` must not leak in)."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    weight: float = Field(1.0, ge=0, description="share of users (relative to the other variants)")
    recent: float = Blend.recent
    covisit: float = Blend.covisit
    trending: float = Blend.trending
    mf: float = Blend.mf
    content: float = Blend.content
    context: float = Blend.context
    explore: float = Blend.explore
    diversity: float = Blend.diversity
    learned: bool = Field(Blend.learned, description="rank with the learned weights (false: the fixed blend above)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECO_", extra="forbid", frozen=True)

    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "reco-engine"
    interactions_topic: str = "interactions"
    items_topic: str = "items"
    recommendations_topic: str = "recommendations"
    dlq_topic: str = "interactions.dlq"
    control_topic: str = "reco-control"
    changelog_topic: str = "reco-state-changelog"
    partitions: int = Field(4, ge=1, description="partitions for topics the engine creates")
    replication_factor: int = Field(1, ge=1)
    session_timeout_ms: int = Field(10_000, ge=1000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None  # SASL_SSL in production
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    kafka_extra: dict[str, str | bool | int | float] = Field(default_factory=dict,
                                                            description="extra librdkafka settings")

    # Processing
    state_dir: Path = Path("./state")
    batch_size: int = Field(500, ge=1, le=100_000)
    batch_timeout_s: float = Field(0.05, gt=0)
    max_event_bytes: int = Field(64 * 1024, ge=256)
    max_event_ahead_s: float = Field(3600.0, gt=0, description="events whose ts is further ahead of "
                                     "their Kafka record's timestamp go to the DLQ (ts_in_future)")
    delivery_timeout_s: float = Field(30.0, gt=0, description="a checkpoint waits this long for its outputs")
    restore_stall_s: float = Field(60.0, gt=0, description="a changelog restore that reads nothing this long fails")
    snapshot_min_records: int = Field(20_000, ge=1, description="a changelog snapshot is written once the "
                                      "log since the last one holds this many records and twice the state's rows")
    snapshot_max_age_s: float = Field(6 * 3600, gt=0, description="... or once the last one is this old "
                                      "(wall time) and the changelog has moved since")
    compaction_max_lag_ms: int = Field(86_400_000, ge=60_000, description="created compacted topics that hold user "
                                       "ids compact an old record within this time (Apache Kafka)")
    segment_ms: int = Field(3_600_000, ge=60_000, description="created compacted topics roll segments this often")
    raw_retention_ms: int = Field(7 * 86_400_000, ge=3_600_000, description="created topics of raw records "
                                  "that name users (interactions, its DLQ, control requests) keep them this long")
    stale_store_delay_s: float = Field(600.0, ge=0, description="a local store of a partition owned elsewhere "
                                       "is removed after this long")
    fault_kill_in_checkpoint: int = Field(0, ge=0, description="tests only: SIGKILL the worker half-way "
                                          "through the changelog writes of its n-th checkpoint")
    catalog_wait_ms: int = Field(500, ge=0, le=60_000, description="before an event, wait at most this long "
                                 "for the items topic to be read up to the event's record timestamp")

    # Model
    k: int = Field(20, ge=1, le=500)
    model_version: str = "v1"
    exclude_purchased: bool = True
    opted_out_feed_aggregates: bool = Field(False, description="opted-out users' events still feed the "
                                            "anonymous aggregates (trending, MF item factors)")
    variants: list[VariantSettings] = Field(default_factory=list)
    # Privacy
    pseudonymize_key: SecretStr | None = Field(None, description="state rows and the changelog hold a keyed "
                                               "hash of each user id instead of the id (secret, never logged)")
    user_ttl_days: float = Field(0.0, ge=0, description="a user whose last event is this much older than "
                                 "their partition's newest event is deleted as on forget (0 = off)")
    # capacities of the models (past one, the coldest entries are evicted; README "What bounds memory")
    trending_max_items: int = Field(EngineConfig.trending_max_items, ge=1, description="items per trending scope")
    trending_max_scopes: int = Field(EngineConfig.trending_max_scopes, ge=3, description="trending scopes (categories)")
    context_max_items: int = Field(EngineConfig.context_max_items, ge=1, description="items per context scope")
    context_max_scopes: int = Field(EngineConfig.context_max_scopes, ge=3, description="context scopes (devices)")
    covisit_max_items: int = Field(EngineConfig.covisit_max_items, ge=2, description="co-visitation rows")
    mf_max_items: int = Field(EngineConfig.mf_max_items, ge=2, description="MF item factors")

    # Operations
    metrics_port: int = Field(9100, ge=0, le=65535, description="0 disables the HTTP endpoint (run and demo)")
    metrics_host: str = Field("127.0.0.1", description="address /metrics, /healthz, /readyz listen on "
                              "(0.0.0.0 for Prometheus or probes from other hosts: compose and k8s set it)")
    # Serving app (`reco serve`, faust-streaming)
    serve_group_id: str = "reco-serve"
    serve_host: str = Field("127.0.0.1", description="address `reco serve` listens on (0.0.0.0: every interface)")
    serve_port: int = Field(6066, ge=1, le=65535, description="HTTP port of `reco serve`")
    serve_advertised_host: str = Field("127.0.0.1", description="how other `reco serve` processes reach this one")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    serve_token: SecretStr | None = Field(None, description="bearer token the write endpoints of `reco serve` require")
    serve_write_rate: float = Field(20.0, gt=0, description="write requests per second one `reco serve` accepts "
                                    "(bursts up to as many); more get 429")
    serve_profile_timeout_s: float = Field(30.0, gt=0, description="GET /users/{id}/profile/ reads the state "
                                           "changelog at most this long, then answers 503")

    @field_validator("variants")
    @classmethod
    def _distinct_variants(cls, variants: list[VariantSettings]) -> list[VariantSettings]:
        names = [v.name for v in variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variant names must differ; repeated: {', '.join(twice)}")
        if variants and not any(v.weight > 0 for v in variants):
            raise ValueError("at least one variant needs a weight above 0")
        return variants

    @field_validator("pseudonymize_key")
    @classmethod
    def _usable_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:  # a short key is guessed offline
            raise ValueError("must be at least 16 characters (a random secret, e.g. `openssl rand -hex 32`)")
        return key

    @field_validator("log_level", "security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka settings shared by every client."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "log.connection.close": False}
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        conf.update(self.kafka_extra)
        return conf

    def engine_config(self) -> EngineConfig:
        variants = tuple(
            Variant(v.name, v.weight, Blend(recent=v.recent, covisit=v.covisit, trending=v.trending,
                                           mf=v.mf, content=v.content, context=v.context,
                                           explore=v.explore, diversity=v.diversity, learned=v.learned))
            for v in self.variants
        ) or (Variant(),)
        return EngineConfig(k=self.k, model_version=self.model_version,
                            exclude_purchased=self.exclude_purchased, variants=variants,
                            opted_out_feed_aggregates=self.opted_out_feed_aggregates,
                            pseudonyms=Pseudonyms(self.pseudonymize_key.get_secret_value()
                                                  if self.pseudonymize_key else None),
                            user_ttl_ms=round(self.user_ttl_days * 86_400_000),
                            **{name: getattr(self, name) for name in CAPACITIES})


CAPACITIES = ("trending_max_items", "trending_max_scopes", "context_max_items", "context_max_scopes",
              "covisit_max_items", "mf_max_items")
ENV_PREFIX = "RECO_"
SECRETS = ("sasl_password", "serve_token", "pseudonymize_key")
JSON_FIELDS = ("kafka_extra", "variants")  # given as JSON in the environment


class SettingsProblem(ValueError):
    """Settings that cannot be used, explained in terms of where they are set."""


def _where(field: str, flagged: Collection[str]) -> str:
    flag = f"--{field.replace('_', '-')}, " if field in flagged else ""
    return f"{field} (from {flag}env {ENV_PREFIX}{field.upper()} or config key `{field}`)"


def explain(error: Exception, flagged: Collection[str] = ()) -> str:
    """One line per problem, naming the environment variable, the flag and the config key."""
    if isinstance(error, ValidationError):
        lines = []
        for e in error.errors():
            field = str(e["loc"][0]) if e["loc"] else "?"
            path = field + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in e["loc"][1:])
            if e["type"] == "extra_forbidden":
                lines.append(f"{path}: not a setting" + (" (a key of the --config file?)" if path == field else ""))
                continue
            if path != field:
                lines.append(f"{path} (in `{field}`, env {ENV_PREFIX}{field.upper()} or the config file): {e['msg']}")
                continue
            got = None if field in SECRETS else e.get("input")  # a secret is never echoed
            lines.append(f"{_where(field, flagged)}: {e['msg']}" + (f" (got {got!r})" if isinstance(got, (str, int, float)) else ""))
        return "; ".join(lines)
    if isinstance(error, SettingsError):
        m = re.search(r'field "(\w+)"', str(error))
        if m and m.group(1) in JSON_FIELDS:
            field = m.group(1)
            example = '{"socket.keepalive.enable": "true"}' if field == "kafka_extra" else '[{"name": "b", "explore": 0.1}]'
            return f"{ENV_PREFIX}{field.upper()} must be JSON, e.g. {ENV_PREFIX}{field.upper()}='{example}'"
    return str(error)


def unknown_env(environ: dict[str, str] | None = None) -> list[str]:
    """A warning per RECO_* environment variable that names no setting (a typo is otherwise
    silently ignored), with the closest setting's variable when there is one."""
    known = [name.upper() for name in Settings.model_fields]
    out = []
    for name in sorted(environ if environ is not None else os.environ):
        field = name.upper()[len(ENV_PREFIX):]
        if name.upper().startswith(ENV_PREFIX) and field not in known:
            close = difflib.get_close_matches(field, known, n=1)
            out.append(f"{name} is not a setting and is ignored"
                       + (f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""))
    return out


def load_settings(config_file: str | Path | None = None, flagged: Collection[str] = (), **overrides: Any) -> Settings:
    """Settings from defaults, an optional TOML file, RECO_* env vars and explicit overrides
    (CLI flags); None-valued overrides are ignored so unset flags do not mask env vars.
    `flagged`: the settings that have a flag, for error messages."""
    cls = Settings
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=path)
        cls = FileSettings
    try:
        settings = cls(**{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, SettingsError) as e:
        raise SettingsProblem(explain(e, flagged)) from e
    except TOMLDecodeError as e:
        raise SettingsProblem(f"{config_file} is not valid TOML: {e}") from e
    check_kafka_client(settings)
    return settings


def check_kafka_client(settings: Settings) -> None:
    """librdkafka's own check of the client settings (unknown property, unsupported SASL
    mechanism, bad value), as one settings error instead of a traceback at the first client.
    No bootstrap servers are given: nothing connects."""
    from confluent_kafka import KafkaException, Producer

    conf = {k: v for k, v in settings.kafka_common().items() if k != "bootstrap.servers"}
    try:
        Producer({"log_level": 0, **conf})
    except KafkaException as e:
        text = e.args[0].str() if e.args and hasattr(e.args[0], "str") else str(e)
        raise SettingsProblem(f"the Kafka client settings are refused: {text} (from {ENV_PREFIX}KAFKA_EXTRA, "
                              f"{ENV_PREFIX}SECURITY_PROTOCOL or {ENV_PREFIX}SASL_MECHANISM)") from None
