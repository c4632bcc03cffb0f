"""Settings, read from ``SWARM_*`` environment variables (and a ``.env`` file if present).

Everything has a default that works offline: a SQLite file under ``SWARM_HOME``, in-process
workers and the simulated model. Setting ``SWARM_DATABASE_URL`` to PostgreSQL and
``SWARM_BROKER_URL`` to Redis turns the same code into a cluster.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from swarm import constants as c


def _default_home() -> Path:
    return Path.home() / ".swarm"


class Settings(BaseSettings):
    """All of swarm's configuration. Field names map to ``SWARM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SWARM_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Where the embedded database and workspaces live.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means sqlite:///$SWARM_HOME/swarm.db.")
    broker_url: str = Field("", description="Redis URL for Celery; empty means in-process workers.")

    llm_base_url: str = Field(
        "", description="OpenAI-compatible endpoint, e.g. https://api.moonshot.ai/v1. Empty: simulated model.")
    llm_api_key: SecretStr = Field(
        SecretStr(""), description="Bearer token for the model endpoint. Never logged.")
    model: str = Field("kimi-k2.5", description="Model name sent to the endpoint.")
    llm_thinking: bool = Field(True, description="Kimi thinking mode (reasoning_content).")
    llm_flavor: Literal["moonshot", "vllm", "openai"] = Field(
        "moonshot",
        description="How to switch thinking off: moonshot's `thinking` field or vLLM/SGLang chat_template_kwargs.")
    llm_timeout: float = Field(600.0, description="Seconds to wait for one model response.")
    llm_max_retries: int = Field(6, ge=0, description="Retries on 429/5xx/connection errors before the step fails.")
    llm_max_concurrency: int = Field(128, ge=1, description="Concurrent model calls per process.")

    web_search_url: str = Field(
        "", description="SearXNG-compatible JSON search endpoint; empty: web_search is not configured.")
    web_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts/CIDRs web_fetch may reach even if private or loopback.")

    python_timeout: float = Field(30.0, description="Seconds a python tool call may run.")
    python_memory_mb: int = Field(512, description="Address-space cap of a python tool call.")
    python_fork_server: bool = Field(
        True, description="Fork each python tool call from a pre-started interpreter (~2 ms of CPU) instead of "
                          "starting a new one (~12 ms). Off: a new interpreter per call.")
    tool_concurrency: int = Field(32, ge=1, description="Concurrent tool calls per process (embedded mode).")

    max_subagents: int = Field(c.DEFAULT_MAX_SUBAGENTS, ge=0)
    max_tool_calls: int = Field(c.DEFAULT_MAX_TOOL_CALLS, ge=0)
    max_steps_per_agent: int = Field(c.DEFAULT_MAX_STEPS_PER_AGENT, ge=1)
    max_wall_seconds: float = Field(c.DEFAULT_MAX_WALL_SECONDS, gt=0)
    max_depth: int = Field(c.DEFAULT_MAX_DEPTH, ge=1)

    lease_seconds: float = Field(c.LEASE_SECONDS, gt=0)
    heartbeat_seconds: float = Field(c.HEARTBEAT_SECONDS, gt=0)
    sweep_interval: float = Field(c.SWEEP_INTERVAL_SECONDS, gt=0)
    republish_after: float = Field(c.REPUBLISH_AFTER_SECONDS, gt=0)

    api_url: str = Field("", description="A swarm server to talk to instead of the local database.")
    api_key: SecretStr = Field(SecretStr(""), description="API key for SWARM_API_URL.")

    @field_validator("database_url")
    @classmethod
    def _normalise_db(cls, v: str) -> str:
        # Users paste libpq-style URLs; SQLAlchemy needs the driver named.
        for prefix in ("postgres://", "postgresql://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix):]
        return v

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'swarm.db'}"

    @property
    def distributed(self) -> bool:
        return bool(self.broker_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
