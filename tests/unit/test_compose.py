"""docker-compose.yml and the Dockerfile against the code's real entry points (Docker does not run
here): every `swarm` command and option exists, every SWARM_* variable is a real setting,
`celery -A workers` loads, and the services have what a durable deployment needs."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import typer.main
import yaml
from celery import Celery

from swarm.config import Settings

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = ("postgres", "redis", "api", "worker", "executor", "flower", "sim")
#: What model-written code must never be able to reach (settings that carry credentials).
SECRET_SETTINGS = ("SWARM_DATABASE_URL", "SWARM_BROKER_URL", "SWARM_LLM_API_KEY", "SWARM_API_KEY")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svc: dict[str, dict[str, Any]] = compose["services"]
    return svc


@pytest.fixture(scope="module")
def cli() -> Any:
    from swarm.cli import (  # noqa: F401
        admin,
        executor,
        main,
        runs,
        worker,
    )
    from swarm.cli.common import app

    for optional in ("swarm.cli.server", "swarm.cli.watch", "swarm.cli.export", "swarm.cli.keys"):
        with contextlib.suppress(ModuleNotFoundError):
            __import__(optional)
    # Typer vendors its own click: duck-type the group (it has .commands; a command has .params).
    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    return group


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_all_services_present(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"postgres", "redis", "migrate", "api", "worker", "executor", "flower", "sim"}
    assert "sweeper" not in services  # every worker replica is a sweeper candidate, one elected
    assert services["sim"]["profiles"] == ["sim"]


def test_every_swarm_command_and_option_exists(services: dict[str, dict[str, Any]], cli: Any) -> None:
    checked = 0
    for name, svc in services.items():
        for raw in [_command(svc), svc.get("healthcheck", {}).get("test", [])]:
            cmd = raw[1:] if isinstance(raw, list) and raw[:1] == ["CMD"] else raw
            if not cmd or cmd[0] != "swarm":
                continue
            group = cli
            args = cmd[1:]
            while hasattr(group, "commands"):
                assert args and args[0] in group.commands, f"{name}: `swarm {' '.join(cmd[1:])}` is not a command"
                group, args = group.commands[args[0]], args[1:]
            opts = {o for p in group.params for o in (*p.opts, *p.secondary_opts)}
            for arg in args:
                if arg.startswith("-"):
                    assert arg.split("=")[0] in opts, f"{name}: {group.name} has no option {arg}"
            checked += 1
    assert checked >= 6


def test_swarm_env_vars_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    from swarm.api.context import FLOWER_URL_ENV

    fields = {f"SWARM_{n.upper()}" for n in Settings.model_fields} | {FLOWER_URL_ENV}
    seen = set()
    for name, svc in services.items():
        for var in _env(svc):
            if var.startswith("SWARM_"):
                assert var in fields, f"{name}: {var} is not a swarm setting"
                seen.add(var)
    assert {"SWARM_DATABASE_URL", "SWARM_BROKER_URL", "SWARM_LLM_BASE_URL"} <= seen


def test_services_agree_on_database_and_broker(services: dict[str, dict[str, Any]]) -> None:
    swarm_services = [n for n, s in services.items() if "SWARM_DATABASE_URL" in _env(s)]
    assert {"migrate", "api", "worker", "flower"} <= set(swarm_services)
    assert len({_env(services[n])["SWARM_DATABASE_URL"] for n in swarm_services}) == 1
    assert len({_env(services[n])["SWARM_BROKER_URL"] for n in swarm_services}) == 1
    db = _env(services["worker"])["SWARM_DATABASE_URL"]
    assert db.startswith("postgresql://") and "@postgres:5432/" in db
    assert Settings(_env_file=None, database_url=db).database_url.startswith("postgresql+psycopg://")
    assert _env(services["worker"])["SWARM_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?")


def test_celery_app_loads_as_compose_uses_it(services: dict[str, dict[str, Any]]) -> None:
    import workers

    assert isinstance(workers.app, Celery)
    assert "swarm.step" in workers.app.tasks
    assert "swarm.sweep" not in workers.app.tasks  # the sweeper is a thread in every worker
    flower = _command(services["flower"])
    assert flower[:4] == ["celery", "-A", "workers", "flower"]
    import flower.command
    from celery.bin.celery import celery as celery_cli

    assert isinstance(celery_cli, click.Group)


def test_workers_scale_and_restart(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N needs neither"
    assert _command(worker)[:2] == ["swarm", "worker"]
    for name, svc in services.items():
        assert "--beat" not in _command(svc), f"{name}: --beat is retired (every worker elects a sweeper)"
    for name in LONG_RUNNING:
        assert services[name].get("restart") in ("unless-stopped", "always"), name
        assert "healthcheck" in services[name], name
    assert services["migrate"].get("restart") == "no"
    assert _command(services["migrate"]) == ["swarm", "db", "upgrade"]
    for name in ("api", "worker"):
        dep = services[name]["depends_on"]
        assert dep["migrate"]["condition"] == "service_completed_successfully", name


def _interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with *values* (an unset :? raises)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if values.get(name):
            return values[name]
        assert op != ":?", f"${{{name}}} is mandatory: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, text)


def test_redis_requires_a_password_every_client_sends(services: dict[str, dict[str, Any]]) -> None:
    redis_cmd = _command(services["redis"])
    password = redis_cmd[redis_cmd.index("--requirepass") + 1]
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?.+\}", password), "the Redis password must be mandatory"
    with pytest.raises(AssertionError, match="mandatory"):
        _interpolate(password, {})
    # The healthcheck's redis-cli authenticates (REDISCLI_AUTH), without the password in its argv.
    assert _interpolate(_env(services["redis"])["REDISCLI_AUTH"], {"REDIS_PASSWORD": "pw"}) == "pw"
    assert "PONG" in " ".join(services["redis"]["healthcheck"]["test"])
    clients = [n for n, s in services.items() if "SWARM_BROKER_URL" in _env(s)]
    assert {"api", "worker", "flower", "migrate"} <= set(clients)
    for name in clients:
        url = urlsplit(_interpolate(_env(services[name])["SWARM_BROKER_URL"], {"REDIS_PASSWORD": "s3cret"}))
        assert (url.scheme, url.hostname, url.port, url.password) == ("redis", "redis", 6379, "s3cret"), name
    # Flower's broker is the app's (`-A workers`): no --broker option that could drop the password.
    assert not any(a.startswith("--broker") for a in _command(services["flower"]))


def test_celery_remote_control_is_off_unless_enabled(services: dict[str, dict[str, Any]]) -> None:
    from swarm.dispatch.celery import celery_config

    for name in ("worker", "flower"):
        value = _interpolate(_env(services[name])["SWARM_CELERY_REMOTE_CONTROL"], {})
        s = Settings(_env_file=None, broker_url="redis://:pw@redis:6379/0", celery_remote_control=value)
        assert celery_config(s)["worker_enable_remote_control"] is False, name
        on = _interpolate(_env(services[name])["SWARM_CELERY_REMOTE_CONTROL"], {"SWARM_CELERY_REMOTE_CONTROL": "true"})
        s = Settings(_env_file=None, broker_url="redis://:pw@redis:6379/0", celery_remote_control=on)
        assert celery_config(s)["worker_enable_remote_control"] is True, name


def test_redis_keeps_its_queues_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    cmd = " ".join(_command(services["redis"]))
    assert "--appendonly yes" in cmd
    assert "--maxmemory-policy noeviction" in cmd
    assert "volumes" in services["redis"]


def test_api_serves_on_all_interfaces_with_healthz(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert _command(api) == ["swarm", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_flower_requires_basic_auth(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    env = _env(flower)
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?.+\}", env["FLOWER_BASIC_AUTH"]), "basic auth must be mandatory"
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])  # the one auth-exempt endpoint


def test_dockerfile_installs_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for part in ("swarm", "workers", "migrations"):
        assert f"COPY {part} ./{part}" in text
    assert re.search(r"pip install (--no-deps )?\.", text)
    assert "USER swarm" in text


def _networks(service: dict[str, Any]) -> set[str]:
    return set(service.get("networks") or ["default"])


def test_model_code_runs_in_an_executor_that_holds_no_secrets(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    executor = services["executor"]
    cmd = _command(executor)
    assert cmd[:2] == ["swarm", "executor"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    env = _env(executor)
    assert "env_file" not in executor
    for var, value in env.items():
        assert var not in SECRET_SETTINGS and not var.startswith(("SWARM_LLM_", "POSTGRES", "REDIS")), var
        assert "POSTGRES_PASSWORD" not in value and "REDIS_PASSWORD" not in value and "LLM" not in value, var
    # Listening beyond loopback needs the token: compose refuses to start without one.
    assert re.fullmatch(r"\$\{SWARM_EXECUTOR_TOKEN:\?.+\}", env["SWARM_EXECUTOR_TOKEN"])


def test_executor_shares_no_network_with_the_database_or_broker(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    nets = _networks(services["executor"])
    assert nets and "default" not in nets
    for name, svc in services.items():
        if name not in ("executor", "worker"):
            assert not nets & _networks(svc), f"{name} shares a network with the executor"
    for net in nets:
        assert compose["networks"][net].get("internal") is True, f"{net}: no route out of the sandbox network"


def test_tool_workers_send_python_calls_to_the_executor(services: dict[str, dict[str, Any]]) -> None:
    executor, worker = services["executor"], services["worker"]
    assert "tool" in _command(worker)[_command(worker).index("--queues") + 1].split(",")
    wenv, xenv = _env(worker), _env(executor)
    url = urlsplit(wenv["SWARM_PYTHON_EXECUTOR_URL"])
    port = _command(executor)[_command(executor).index("--port") + 1]
    assert (url.scheme, url.hostname, url.port) == ("http", "executor", int(port))
    assert wenv["SWARM_EXECUTOR_TOKEN"] == xenv["SWARM_EXECUTOR_TOKEN"]
    for var in xenv:  # the same limits on both sides (the worker's timeout waits for the executor's)
        if var.startswith("SWARM_PYTHON_"):
            assert wenv.get(var) == xenv[var], var
    assert _networks(worker) >= {"default"} and _networks(worker) & _networks(executor)
    assert worker["depends_on"]["executor"]["condition"] == "service_healthy"
    s = Settings(_env_file=None, python_executor_url=wenv["SWARM_PYTHON_EXECUTOR_URL"], executor_token="t")
    assert s.python_executor_url == "http://executor:8790"
    # Every other service that consumes the tool queue would run model code itself.
    for name, svc in services.items():
        cmd = _command(svc)
        if cmd[:2] == ["swarm", "worker"] and "tool" in cmd[cmd.index("--queues") + 1].split(","):
            assert "SWARM_PYTHON_EXECUTOR_URL" in _env(svc), name


def test_executor_can_make_sandboxes_without_being_privileged(services: dict[str, dict[str, Any]]) -> None:
    executor = services["executor"]
    assert not executor.get("privileged")
    assert str(executor["user"]).split(":")[0] not in ("0", "root")
    assert executor["cap_drop"] == ["ALL"] and executor["cap_add"] == ["SYS_ADMIN"]
    opts = set(executor["security_opt"])
    assert {"no-new-privileges:true", "apparmor=unconfined", "systempaths=unconfined"} <= opts
    assert not any(o.startswith("seccomp") for o in opts), "keep Docker's seccomp profile"
    assert "/healthz" in " ".join(executor["healthcheck"]["test"])


def test_dockerfile_installs_bubblewrap_before_dropping_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    install = text.index("apt-get install -y --no-install-recommends bubblewrap")
    assert install < text.index("USER swarm")
