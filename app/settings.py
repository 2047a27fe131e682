"""Settings, read from STOPGUARD_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
KeywordSet = Literal["standard", "extended"]


class Settings(BaseSettings):
    """Every knob stopguard has; the README lists them."""

    model_config = SettingsConfigDict(env_prefix="STOPGUARD_", extra="ignore")

    bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka host:port list; unset starts the embedded broker.",
    )
    topic_prefix: str = ""
    app_id: str = "stopguard"
    data_dir: Path = Path(".stopguard/data")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    canonical_url: str | None = Field(
        default=None,
        description="URL other workers use to reach this one's HTTP API.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The worker's event loop; uvloop does Faust's per-record "
        "event-loop work in C (BENCHMARKS.md).",
    )

    partitions: int | None = Field(
        default=None, ge=1, description="Overrides topics/topics.yaml."
    )
    replication_factor: int | None = Field(default=None, ge=1)
    topics_file: Path | None = None

    keyword_set: KeywordSet = "standard"
    keywords_file: Path | None = None

    max_idle_ms: int = Field(
        default=2000,
        ge=0,
        description="Longest a send waits for a lagging inbound partition.",
    )
    embedded_broker_port: int = 19092
    broker_flavour: Literal["kafka", "tansu"] = Field(
        default="kafka",
        description="`tansu` corrects the embedded broker's end offsets.",
    )

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @field_validator("bootstrap_servers")
    @classmethod
    def _blank_means_unset(cls, value: str | None) -> str | None:
        return value or None

    def confluent_config(self) -> dict[str, Any]:
        """Connection and security options for a confluent-kafka client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.require_bootstrap_servers(),
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username or ""
            password = self.sasl_password
            config["sasl.password"] = password.get_secret_value() if password else ""
        optional = {
            "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile,
            "ssl.key.location": self.ssl_keyfile,
        }
        config.update({k: str(v) for k, v in optional.items() if v is not None})
        return config

    def require_bootstrap_servers(self) -> str:
        if not self.bootstrap_servers:
            from app.errors import ConfigurationError

            raise ConfigurationError(
                "STOPGUARD_BOOTSTRAP_SERVERS is not set: point it at your Kafka "
                "cluster (host:port,...) or use `stopguard run`, which starts "
                "the embedded broker"
            )
        return self.bootstrap_servers


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
