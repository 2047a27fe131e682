"""Offline checks of the deployment files: Dockerfile, compose, Kubernetes.

Nothing here starts a broker, a container or a cluster. Kubernetes objects are
checked against the schemas bundled with kubernetes-validate, KafkaTopic (a
Strimzi CRD) against the small schema below, and docker-compose.yml against
the Compose Specification schema that check-jsonschema ships. The rest checks
that every file names the topics and settings of topics/topics.yaml.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.errors import ConfigurationError
from app.settings import Settings
from app.tools.strimzi import (
    CLUSTER_LABEL,
    DEFAULT_CLUSTER,
    render_kafka_topics,
    resource_name,
)
from app.topics import TopicCatalog, TopicSpec, load_catalog

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
STRIMZI_TOPICS = K8S / "strimzi" / "topics.yaml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# The manifests use no API newer than this Kubernetes minor.
KUBERNETES_VERSION = "1.31"
DATA_DIR = "/var/lib/stopguard"
CREDENTIALS_SECRET = "stopguard-kafka-credentials"
WORKERS = ("worker-1", "worker-2")

# The fields of Strimzi's KafkaTopic CRD that stopguard sets, with the CRD's
# own bounds: kubernetes-validate has no schemas for custom resources.
KAFKA_TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                "name": {
                    "type": "string",
                    "maxLength": 253,
                    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                },
                "namespace": {"type": "string"},
                "labels": {
                    "type": "object",
                    "required": [CLUSTER_LABEL],
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "spec": {
            "type": "object",
            "required": ["topicName", "partitions", "replicas"],
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string", "minLength": 1},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer", "boolean"]},
                },
            },
        },
    },
}


# --- helpers -----------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _object_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _base_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in _documents(path):
                yield f"{path.name}:{_object_id(doc)}", doc


@functools.cache
def _rendered_production() -> tuple[dict[str, Any], ...] | None:
    """`kustomize build` of the production overlay; None without a binary."""
    overlay = str(K8S / "overlays" / "production")
    if kustomize := shutil.which("kustomize"):
        command = [kustomize, "build", overlay]
    elif kubectl := shutil.which("kubectl"):
        command = [kubectl, "kustomize", overlay]
    else:
        return None

    result = subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=120
    )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _production_params() -> list[Any]:
    rendered = _rendered_production()
    if rendered is None:
        reason = "neither kustomize nor kubectl is installed"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(doc, id=_object_id(doc)) for doc in rendered]


def _only(docs: Any, kind: str) -> dict[str, Any]:
    [doc] = [doc for doc in docs if doc["kind"] == kind]
    return doc


def _config_data(docs: Any) -> dict[str, str]:
    return dict(_only(docs, "ConfigMap")["data"])


def _validate_object(doc: dict[str, Any]) -> None:
    if doc["kind"] == "KafkaTopic":
        jsonschema.validate(doc, KAFKA_TOPIC_SCHEMA)
    else:
        # strict: an unknown field (a typo such as livenesProbe) is an error.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _compose_spec_schema() -> dict[str, Any]:
    # check-jsonschema ships the schema as package data. Its file is read
    # without importing the package, whose command line needs a newer click
    # than faust-streaming allows.
    found = importlib.util.find_spec("check_jsonschema")
    assert found is not None and found.submodule_search_locations, (
        "install check-jsonschema (requirements-ops-test.txt) for the "
        "Compose Specification schema"
    )
    package = Path(next(iter(found.submodule_search_locations)))
    schema_file = package / "builtin_schemas" / "vendor" / "compose-spec.json"
    return dict(json.loads(schema_file.read_text()))


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the checked-in files assume them: no STOPGUARD_* set."""
    for name in [n for n in os.environ if n.startswith("STOPGUARD_")]:
        monkeypatch.delenv(name)
    return Settings()


@pytest.fixture
def catalog(default_settings: Settings) -> TopicCatalog:
    return load_catalog(default_settings)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


# --- Kubernetes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "doc", [pytest.param(doc, id=name) for name, doc in _base_objects()]
)
def test_base_object_matches_kubernetes_schema(doc: dict[str, Any]) -> None:
    _validate_object(doc)


@pytest.mark.parametrize("doc", _production_params())
def test_production_object_matches_its_schema(doc: dict[str, Any]) -> None:
    _validate_object(doc)


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(doc, id=doc["spec"]["topicName"])
        for doc in _documents(STRIMZI_TOPICS)
    ],
)
def test_strimzi_topic_matches_kafka_topic_schema(doc: dict[str, Any]) -> None:
    _validate_object(doc)


def test_strict_kubernetes_schema_rejects_a_misspelt_field() -> None:
    statefulset = _only(_documents(K8S / "base" / "statefulset.yaml"), "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")

    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_object(statefulset)


def test_base_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    manifests = {p.name for p in (K8S / "base").glob("*.yaml")}

    assert set(kustomization["resources"]) == manifests - {"kustomization.yaml"}


def test_statefulset_runs_workers_as_the_spec_requires() -> None:
    docs = [doc for _, doc in _base_objects()]
    settings = _config_data(docs)
    statefulset = _only(docs, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]]
    assert mounts["data"] == settings["STOPGUARD_DATA_DIR"] == DATA_DIR
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]
    assert settings["STOPGUARD_WEB_HOST"] == "0.0.0.0"
    assert container["ports"][0]["containerPort"] == int(settings["STOPGUARD_WEB_PORT"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"requests", "limits"} <= container["resources"].keys()


def test_sasl_credentials_come_from_an_optional_secret() -> None:
    statefulset = _only(_documents(K8S / "base" / "statefulset.yaml"), "StatefulSet")
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in container["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    }

    assert refs.keys() == {"STOPGUARD_SASL_USERNAME", "STOPGUARD_SASL_PASSWORD"}
    for ref in refs.values():
        assert ref["name"] == CREDENTIALS_SECRET and ref["optional"] is True


# --- Strimzi topics: one source of truth -----------------------------------------


def test_strimzi_topics_file_is_rendered_from_topics_yaml(
    catalog: TopicCatalog,
) -> None:
    expected = render_kafka_topics(catalog, DEFAULT_CLUSTER)

    assert STRIMZI_TOPICS.read_text() == expected, (
        "k8s/strimzi/topics.yaml is stale: run "
        "`python -m app.tools.strimzi > k8s/strimzi/topics.yaml`"
    )


def test_strimzi_topics_carry_the_catalog(catalog: TopicCatalog) -> None:
    resources = {d["spec"]["topicName"]: d for d in _documents(STRIMZI_TOPICS)}

    assert resources.keys() == {spec.name for spec in catalog}
    for spec in catalog:
        topic = resources[spec.name]["spec"]
        assert topic["partitions"] == spec.partitions
        assert topic["replicas"] == spec.replication_factor
        assert {k: str(v) for k, v in topic["config"].items()} == spec.config


@pytest.mark.parametrize(
    ("topic", "name"),
    [
        pytest.param("sms.inbound", "sms-inbound", id="dots"),
        pytest.param("Sms_Outbound.x", "sms-outbound-x", id="case-and-underscore"),
        pytest.param(
            "stopguard-consent-changelog",
            "stopguard-consent-changelog",
            id="already-valid",
        ),
        pytest.param(".prefixed.", "prefixed", id="no-leading-or-trailing-hyphen"),
    ],
)
def test_resource_name_is_a_kubernetes_name(topic: str, name: str) -> None:
    assert resource_name(topic) == name


def test_topics_with_clashing_resource_names_are_refused() -> None:
    specs = [
        TopicSpec("a", "sms.inbound", "input", 6, 1),
        TopicSpec("b", "sms_inbound", "input", 6, 1),
    ]

    with pytest.raises(ConfigurationError, match="sms-inbound"):
        render_kafka_topics(specs, DEFAULT_CLUSTER)


def test_kubernetes_settings_agree_with_the_strimzi_topics() -> None:
    docs = [doc for _, doc in _base_objects()]
    settings = _config_data(docs)
    topics = _documents(STRIMZI_TOPICS)
    clusters = {t["metadata"]["labels"][CLUSTER_LABEL] for t in topics}

    # The changelog names in topics.yaml were rendered with the default app id.
    assert settings["STOPGUARD_APP_ID"] == Settings.model_fields["app_id"].default
    assert not settings.get("STOPGUARD_TOPIC_PREFIX")
    assert clusters == {DEFAULT_CLUSTER}
    bootstrap = settings["STOPGUARD_BOOTSTRAP_SERVERS"]
    assert bootstrap.startswith(f"{DEFAULT_CLUSTER}-kafka-bootstrap:")
    assert {t["spec"]["replicas"] for t in topics} == {
        int(settings["STOPGUARD_REPLICATION_FACTOR"])
    }


def test_production_replication_factor_matches_its_topics() -> None:
    rendered = _rendered_production()
    if rendered is None:
        pytest.skip("neither kustomize nor kubectl is installed")
    settings = _config_data(rendered)
    topics = [doc for doc in rendered if doc["kind"] == "KafkaTopic"]

    assert len(topics) == len(_documents(STRIMZI_TOPICS))
    assert {t["spec"]["replicas"] for t in topics} == {
        int(settings["STOPGUARD_REPLICATION_FACTOR"])
    }
    assert _only(rendered, "StatefulSet")["spec"]["replicas"] == 3


# --- docker compose --------------------------------------------------------------


def test_compose_file_matches_compose_specification(compose: dict[str, Any]) -> None:
    schema = _compose_spec_schema()

    jsonschema.validators.validator_for(schema)(schema).validate(compose)


def test_compose_schema_rejects_an_unknown_depends_on_condition(
    compose: dict[str, Any],
) -> None:
    schema = _compose_spec_schema()
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker-1"]["depends_on"]["topics"]["condition"] = "done"

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(broken)


def test_compose_kafka_is_a_pinned_kraft_broker(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]

    assert re.fullmatch(r"apache/kafka:(3\.9|4\.\d+)\.\d+", kafka["image"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert "healthcheck" in kafka


def test_compose_topics_run_once_after_kafka_is_healthy(
    compose: dict[str, Any],
) -> None:
    topics = compose["services"]["topics"]

    assert topics["command"] == ["topics", "apply"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", WORKERS)
def test_compose_worker_waits_for_topics_and_checks_health(
    compose: dict[str, Any], name: str
) -> None:
    worker = compose["services"][name]

    assert worker["build"] == "."
    assert worker["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )
    assert worker["environment"]["STOPGUARD_WEB_HOST"] == "0.0.0.0"
    assert "/health" in " ".join(worker["healthcheck"]["test"])


def test_compose_workers_share_a_group_but_not_state(compose: dict[str, Any]) -> None:
    workers = [compose["services"][name] for name in WORKERS]
    app_ids = {w["environment"]["STOPGUARD_APP_ID"] for w in workers}
    volumes = [w["volumes"][0].split(":") for w in workers]
    published = [w["ports"][0].split(":") for w in workers]

    assert app_ids == {Settings.model_fields["app_id"].default}
    assert {path for _, path in volumes} == {DATA_DIR}
    assert len({volume for volume, _ in volumes}) == len(workers)
    assert all(volume in compose["volumes"] for volume, _ in volumes)
    # host address, host port, container port: loopback only on the host.
    assert [p[0] for p in published] == ["127.0.0.1", "127.0.0.1"]
    assert [p[1] for p in published] == ["6066", "6067"]


def test_compose_settings_agree_with_topics_yaml(
    compose: dict[str, Any], catalog: TopicCatalog
) -> None:
    kafka_env = compose["services"]["kafka"]["environment"]
    stopguard = [s for s in compose["services"].values() if s.get("build") == "."]
    replication = {spec.replication_factor for spec in catalog}

    for service in stopguard:
        env = service["environment"]
        assert (
            env["STOPGUARD_BOOTSTRAP_SERVERS"]
            in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
        )
        assert not env.get("STOPGUARD_TOPIC_PREFIX")
        assert {int(env["STOPGUARD_REPLICATION_FACTOR"])} == replication
        if "STOPGUARD_PARTITIONS" in env:
            assert int(env["STOPGUARD_PARTITIONS"]) == catalog.partitions


# --- Dockerfile ------------------------------------------------------------------


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in _dockerfile_instructions() if keyword == "USER"]
    statefulset = _only(_documents(K8S / "base" / "statefulset.yaml"), "StatefulSet")
    run_as = statefulset["spec"]["template"]["spec"]["securityContext"]["runAsUser"]

    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # Kubernetes can only verify runAsNonRoot for a numeric uid.
    assert user == str(run_as)


def test_dockerfile_checks_health_and_runs_the_worker() -> None:
    instructions = _dockerfile_instructions()
    found = dict(instructions)
    stages = [args for keyword, args in instructions if keyword == "FROM"]

    assert len(stages) >= 2
    assert "/health" in found["HEALTHCHECK"]
    assert json.loads(found["ENTRYPOINT"]) == ["stopguard"]
    assert json.loads(found["CMD"]) == ["run"]
    assert found["EXPOSE"] == "6066"
    assert DATA_DIR in found["VOLUME"]


def test_dockerignore_keeps_what_the_image_copies() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".venv"} <= ignored
    assert not {"app", "topics", "pyproject.toml", "README.md"} & ignored
