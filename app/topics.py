"""The topic catalogue, read from topics/topics.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from app.errors import ConfigurationError
from app.settings import Settings

TopicRole = Literal["input", "output", "internal", "changelog"]

DEFAULT_TOPICS_FILE = Path(__file__).resolve().parent.parent / "topics" / "topics.yaml"
TOPIC_KEYS = (
    "inbound",
    "requests",
    "imports",
    "numbers",
    "approved",
    "rejected",
    "events",
    "deadletter",
    "rekeyed",
    "consent_changelog",
    "decisions_changelog",
    "progress_changelog",
)


@dataclass(frozen=True)
class TopicSpec:
    key: str
    name: str
    role: TopicRole
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicCatalog:
    specs: dict[str, TopicSpec]

    def __getattr__(self, key: str) -> str:
        try:
            return self.specs[key].name
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.specs.values())

    @property
    def partitions(self) -> int:
        return self.specs["inbound"].partitions


def load_catalog(settings: Settings) -> TopicCatalog:
    """Topic names, partitions and configs, with prefix and overrides applied."""
    path = settings.topics_file or DEFAULT_TOPICS_FILE
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the topic definitions at {path}: {exc}; set "
            "STOPGUARD_TOPICS_FILE to a copy of topics/topics.yaml"
        ) from exc
    partitions = settings.partitions or int(document["partitions"])
    replication = settings.replication_factor or int(document["replication_factor"])
    specs = {
        key: _spec(key, entry, settings, partitions, replication)
        for key, entry in document["topics"].items()
    }
    missing = set(TOPIC_KEYS) - specs.keys()
    if missing:
        raise ConfigurationError(
            f"{path} does not define the topics {sorted(missing)}; restore them "
            "from the stopguard distribution"
        )
    return TopicCatalog(specs)


def _spec(
    key: str, entry: dict, settings: Settings, partitions: int, replication: int
) -> TopicSpec:
    name = str(entry["name"]).format(app_id=settings.app_id)
    if entry["role"] != "changelog":
        # Faust names changelogs from the app id, which carries its own prefix.
        name = settings.topic_prefix + name
    config = {k: str(v) for k, v in (entry.get("config") or {}).items()}
    return TopicSpec(key, name, entry["role"], partitions, replication, config)
