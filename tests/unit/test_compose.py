"""docker-compose.yml, the README and the test fixtures name the same servers.

The compose file is parsed, not run (the suite never needs Docker): its services,
images, host ports and credentials must be the ones the README's "Against real
servers" command and the fixtures use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

import pg_fixtures

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    services: dict[str, Any] = doc["services"]
    return services


def _port(service: dict[str, Any], inside: int) -> tuple[str, int]:
    (mapping,) = service["ports"]
    host, outside, container = str(mapping).split(":")
    assert int(container) == inside
    return host, int(outside)


def _dsn(service: dict[str, Any]) -> str:
    env = service["environment"]
    host, port = _port(service, 5432)
    user, password, db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
    return f"postgresql://{user}:{password}@{host}:{port}/{db}"


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Against real servers", 1)[1]
    return section.split("\n## ", 1)[0]


def test_services_images_and_ports() -> None:
    services = _compose()
    assert set(services) == {"pgvector", "postgres15", "redis"}
    assert services["pgvector"]["image"] == "pgvector/pgvector:pg17"
    assert services["pgvector"]["image"] == pg_fixtures._PGVECTOR_IMAGE
    assert services["postgres15"]["image"] == "postgres:15"
    assert services["redis"]["image"].startswith("redis:")
    ports = {name: _port(svc, 6379 if name == "redis" else 5432) for name, svc in services.items()}
    assert ports == {
        "pgvector": ("127.0.0.1", 55432),
        "postgres15": ("127.0.0.1", 55433),
        "redis": ("127.0.0.1", 56379),
    }
    # Not the ports of the servers a developer or CI machine already runs.
    assert not {port for _, port in ports.values()} & {5432, 6379}


def test_every_service_has_a_health_check() -> None:
    for name, service in _compose().items():
        check = service.get("healthcheck")
        assert check and check["test"], name
        assert check["retries"] >= 10, name


def test_readme_command_uses_the_compose_servers() -> None:
    services = _compose()
    section = _readme_section()
    assert "docker compose up -d" in section
    env = dict(re.findall(r"(MNEME_[A-Z0-9_]+)=(\S+)", section))
    assert env["MNEME_TEST_DSN"] == _dsn(services["pgvector"])
    assert env["MNEME_PG15_DSN"] == _dsn(services["postgres15"])
    host, port = _port(services["redis"], 6379)
    assert env["MNEME_REDIS_URL"] == f"redis://{host}:{port}/15"
    assert "make test" in section


def test_the_compose_comment_shows_the_same_command() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    services = _compose()
    assert f"MNEME_TEST_DSN={_dsn(services['pgvector'])}" in text
    assert f"MNEME_PG15_DSN={_dsn(services['postgres15'])}" in text
    assert "MNEME_REDIS_URL=redis://127.0.0.1:56379/15" in text
