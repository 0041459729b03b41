"""docker-compose.yml is valid and wires the deployment as documented.

Debian's docker-compose (v1) validates and renders a compose file without a
Docker engine; scripts/setup.sh installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PASSWORD = "compose-test-secret"


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "docker-compose is not installed: run scripts/setup.sh "
            "(as root it installs the Debian package docker-compose)",
            pytrace=False,
        )
    return exe


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty --env-file, so that a developer's .env cannot change what is tested."""
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


def _compose(
    env_file: Path, *args: str, password: str | None = PASSWORD
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env.pop("POSTGRES_PASSWORD", None)
    if password is not None:
        env["POSTGRES_PASSWORD"] = password
    return subprocess.run(
        [
            _docker_compose(),
            "--env-file",
            str(env_file),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "config",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _parse_yaml(text: str) -> Any:
    """Parse YAML with PyYAML, or with the interpreter docker-compose v1 runs on."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    shebang = Path(_docker_compose()).read_bytes()[:200].split(b"\n", 1)[0].decode()
    if not (shebang.startswith("#!") and "python" in shebang):
        pytest.fail("PyYAML is needed to read `docker-compose config`: pip install pyyaml")
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    converted = subprocess.run(
        [*shebang[2:].split(), "-c", to_json],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(converted.stdout)


def test_compose_file_is_valid(empty_env_file: Path) -> None:
    result = _compose(empty_env_file, "-q")
    assert result.returncode == 0, result.stderr


def test_compose_requires_the_database_password(empty_env_file: Path) -> None:
    result = _compose(empty_env_file, "-q", password=None)
    assert result.returncode != 0, "docker-compose.yml must not default the database password"
    assert "POSTGRES_PASSWORD" in result.stderr, result.stderr


def test_compose_wires_the_services(empty_env_file: Path) -> None:
    result = _compose(empty_env_file)
    assert result.returncode == 0, result.stderr
    config = _parse_yaml(result.stdout)
    services = config["services"]
    assert {"postgis", "redis", "sigueme"} <= set(services)

    app = services["sigueme"]
    depends_on = app["depends_on"]
    assert {"postgis", "redis"} <= set(depends_on)
    if isinstance(depends_on, dict):
        for name in ("postgis", "redis"):
            assert depends_on[name]["condition"] == "service_healthy"
    for name in ("postgis", "redis"):
        assert services[name].get("healthcheck"), f"{name} has no healthcheck"

    env = app["environment"]
    assert env["SIGUEME_DATABASE_URL"] == (
        f"postgresql+asyncpg://sigueme:{PASSWORD}@postgis:5432/sigueme"
    )
    assert env["SIGUEME_REDIS_URL"] == "redis://redis:6379/0"
    assert services["postgis"]["environment"]["POSTGRES_PASSWORD"] == PASSWORD
