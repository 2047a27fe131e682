from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import faust
import pytest

from app.errors import ConfigurationError
from app.settings import Settings
from app.topics import load_catalog
from app.worker.kafka_options import aiokafka_options, faust_credentials


def test_no_bootstrap_servers_means_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="STOPGUARD_BOOTSTRAP_SERVERS"):
        Settings(bootstrap_servers="").confluent_config()


def test_sasl_scram_reaches_every_client() -> None:
    settings = Settings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="stopguard",
        sasl_password="s3cret",
    )

    confluent = settings.confluent_config()
    aiokafka = aiokafka_options(settings)
    credentials = faust_credentials(settings)

    assert confluent["sasl.mechanism"] == "SCRAM-SHA-512"
    assert confluent["sasl.password"] == "s3cret"
    assert aiokafka["sasl_plain_username"] == "stopguard"
    assert aiokafka["security_protocol"] == "SASL_PLAINTEXT"
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert "s3cret" not in repr(settings)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_tls_files_reach_the_clients(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=test-ca",
            "-days",
            "1",
            "-keyout",
            str(tmp_path / "ca.key"),
            "-out",
            str(ca),
        ],
        check=True,
        capture_output=True,
    )
    settings = Settings(
        bootstrap_servers="kafka:9093", security_protocol="SSL", ssl_cafile=ca
    )

    assert settings.confluent_config()["ssl.ca.location"] == str(ca)
    assert aiokafka_options(settings)["ssl_context"] is not None
    assert isinstance(faust_credentials(settings), faust.SSLCredentials)


def test_plaintext_needs_no_credentials() -> None:
    assert faust_credentials(Settings(bootstrap_servers="k:9092")) is None


def test_prefix_and_partitions_apply_to_every_topic() -> None:
    settings = Settings(topic_prefix="acme.", partitions=12, app_id="sg")
    catalog = load_catalog(settings)

    assert catalog.inbound == "acme.sms.inbound"
    assert catalog.consent_changelog == "sg-consent-changelog"
    assert {spec.partitions for spec in catalog} == {12}
