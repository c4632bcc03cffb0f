"""Settings come from the environment, and from a `.env` file only when one is named
(SWARM_ENV_FILE or `swarm --env-file`): a `.env` in the working directory, which tool code or a
run's files may be able to write, is never read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.config import ENV_FILE_VAR, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("SWARM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    return {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")} | {"SWARM_HOME": str(tmp_path / "home")}


def _dotenv(path: Path, model: str) -> Path:
    path.write_text(f"SWARM_MODEL={model}\nSWARM_LLM_MAX_CONCURRENCY=7\n")
    return path


def test_a_dotenv_in_the_working_directory_is_ignored(clean_env, tmp_path, monkeypatch):
    _dotenv(tmp_path / ".env", "from-cwd")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert (s.model, s.llm_max_concurrency) == ("kimi-k2.5", 128)


def test_the_file_named_by_swarm_env_file_is_read(clean_env, tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    named = _dotenv(tmp_path / "etc" / "swarm.env", "from-file")
    _dotenv(tmp_path / ".env", "from-cwd")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_FILE_VAR, str(named))
    assert (Settings().model, Settings().llm_max_concurrency) == ("from-file", 7)
    monkeypatch.setenv("SWARM_MODEL", "from-env")  # the environment wins over the file
    assert Settings().model == "from-env"
    assert Settings(model="from-code").model == "from-code"


def test_a_named_file_that_does_not_exist_is_an_error(clean_env, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_FILE_VAR, str(tmp_path / "missing.env"))
    with pytest.raises(ValueError, match=f"{ENV_FILE_VAR}=.*missing.env: no such file"):
        Settings()


def _planned_llm_concurrency(env: dict[str, str], cwd: Path, *args: str) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "swarm", *args, "worker", "--queues", "llm", "--dry-run", "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (cmd,) = json.loads(out.stdout)["commands"]
    return int(cmd[cmd.index("-c") + 1])


def test_the_swarm_command_reads_only_an_explicit_env_file(clean_env, tmp_path):
    _dotenv(tmp_path / ".env", "from-cwd")
    named = tmp_path / "swarm.env"
    named.write_text("SWARM_LLM_MAX_CONCURRENCY=9\n")
    env = {**clean_env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    assert _planned_llm_concurrency(env, tmp_path) == 128  # the cwd's .env (7) is ignored
    assert _planned_llm_concurrency(env, tmp_path, "--env-file", str(named)) == 9
    assert _planned_llm_concurrency({**env, ENV_FILE_VAR: str(named)}, tmp_path) == 9
    bad = subprocess.run(
        [sys.executable, "-m", "swarm", "--env-file", str(tmp_path / "nope.env"), "worker", "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "nope.env" in bad.stderr
