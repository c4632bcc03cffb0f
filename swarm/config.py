"""Settings, read from ``SWARM_*`` environment variables, and from a ``.env`` file only when one is
named explicitly (``SWARM_ENV_FILE=/etc/swarm/swarm.env`` or ``swarm --env-file PATH``).

A ``.env`` in the working directory is never read: a server's or worker's working directory may be
writable by what it runs (tool code, a run's files), and configuration must not be.

Everything has a default that works offline: a SQLite file under ``SWARM_HOME``, in-process
workers and the simulated model. Setting ``SWARM_DATABASE_URL`` to PostgreSQL and
``SWARM_BROKER_URL`` to Redis turns the same code into a cluster.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from swarm import constants as c
from swarm import provider_profiles

#: The one way to have settings read from a ``.env`` file: its path in this variable.
ENV_FILE_VAR = "SWARM_ENV_FILE"


def explicit_env_file() -> Path | None:
    """The ``.env`` file named by :data:`ENV_FILE_VAR`, or None. A named file that does not exist is
    an error (pydantic-settings would silently ignore it)."""
    raw = os.environ.get(ENV_FILE_VAR, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError(f"{ENV_FILE_VAR}={raw}: no such file")
    return path


def _default_home() -> Path:
    return Path.home() / ".swarm"


class Settings(BaseSettings):
    """All of swarm's configuration. Field names map to ``SWARM_<NAME>``."""

    # env_file=None: never a `.env` from the working directory; see settings_customise_sources.
    model_config = SettingsConfigDict(env_prefix="SWARM_", env_file=None, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence as usual: arguments, then the environment, then the file. A file given in
        # code (`Settings(_env_file=path)`) wins over SWARM_ENV_FILE.
        if getattr(dotenv_settings, "env_file", None) is None and (path := explicit_env_file()) is not None:
            dotenv_settings = DotEnvSettingsSource(settings_cls, env_file=path)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    home: Path = Field(default_factory=_default_home, description="Where the embedded database and workspaces live.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means sqlite:///$SWARM_HOME/swarm.db.")
    broker_url: str = Field("", description="Redis URL for Celery; empty means in-process workers.")
    celery_remote_control: bool = Field(
        False,
        description="Let workers obey Celery's remote control (inspect, ping, rate_limit, shutdown, ...) "
        "sent by anyone with broker access. Off: only swarm's tasks reach a worker; Flower "
        "still sees every task and worker through events, but its worker pages and "
        "pool/rate-limit/shutdown buttons need this on.",
    )

    log_format: Literal["text", "json"] = Field(
        "text",
        description="How swarm's processes (CLI, API, workers) write their log: 'text' lines, or 'json': one "
        "JSON object a line. Both carry the run, agent and step ids a line is about.",
    )

    llm_base_url: str = Field(
        "", description="OpenAI-compatible endpoint, e.g. https://api.moonshot.ai/v1. Empty: simulated model."
    )
    llm_api_key: SecretStr = Field(SecretStr(""), description="Bearer token for the model endpoint. Never logged.")
    model: str = Field("kimi-k2.5", description="Model name sent to the endpoint.")
    prices: str = Field(
        "",
        description="A price file (TOML, or JSON by its .json suffix): USD per million tokens per model "
        "(input, input_cached, output), on top of the built-in kimi-k2.5 prices. A model without a price "
        "has an unknown cost.",
    )
    llm_thinking: bool = Field(True, description="Kimi thinking mode (reasoning_content).")
    llm_flavor: Literal["moonshot", "vllm", "openai"] = Field(
        "moonshot",
        description="How to switch thinking off: moonshot's `thinking` field or vLLM/SGLang chat_template_kwargs.",
    )
    llm_timeout: float = Field(600.0, description="Seconds to wait for one model response.")
    llm_max_retries: int = Field(6, ge=0, description="Retries on 429/5xx/connection errors before the step fails.")
    llm_max_concurrency: int = Field(
        128,
        ge=1,
        description="Threads per process for model steps' database work (claim, commit); model calls "
        "wait on the process's event loop, not on these (SWARM_LLM_MAX_IN_FLIGHT), except with a "
        "provider capacity shared through Redis, whose calls still hold one of these threads each.",
    )
    llm_max_in_flight: int = Field(
        2000,
        ge=1,
        description="Model calls one process holds at once (its memory budget), under the provider's own limits.",
    )
    llm_vision: bool = Field(
        True,
        description="Whether the model sees images: a PNG or JPEG a tool call writes (or an image a tool "
        "returns) goes to the agent's next model call as an image part, downscaled. False (a text-only "
        "model): a one-line note names the image instead.",
    )

    llm_rate_limit_patience: float = Field(
        900.0,
        gt=0,
        description="Seconds a model call keeps retrying the provider's 429 'slow down' answers (which do not use "
        "up SWARM_LLM_MAX_RETRIES) before its step fails; quota errors and 401/403 fail at once.",
    )

    provider_tier: str = Field(
        "",
        description="The model account's rate-limit preset: kimi-tier0 ... kimi-tier5 (docs/providers.md). "
        "Empty: no preset. SWARM_PROVIDER_CONCURRENCY/RPM/TPM override its values.",
    )
    provider_concurrency: int | None = Field(
        None, gt=0, description="Model calls in flight the account allows, all workers together (none: no limit)."
    )
    provider_rpm: int | None = Field(None, gt=0, description="Model requests per minute the account allows.")
    provider_tpm: int | None = Field(None, gt=0, description="Model tokens per minute the account allows.")
    providers: str = Field(
        "",
        description="Named model providers a run may choose (swarm run --provider NAME): a JSON or TOML file, or "
        "inline JSON, of base_url, api_key as a ${VAR} reference, model, tier, concurrency, rpm, tpm "
        "(docs/providers.md). Every worker needs the same. Empty: only the SWARM_LLM_* provider.",
    )
    _profiles: dict[str, provider_profiles.Profile] = PrivateAttr(default_factory=dict)
    provider_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="Lease of a shared concurrency slot (cluster): renewed while the call runs, so a slot "
        "of a worker that died comes back within this time.",
    )

    web_search_url: str = Field(
        "", description="SearXNG-compatible JSON search endpoint; empty: web_search is not configured."
    )
    web_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts/CIDRs web_fetch may reach even if private or loopback."
    )
    web_fetch_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds one web_fetch call may take in all: name lookup, connecting, the headers, "
        "the body and every redirect.",
    )

    python_timeout: float = Field(30.0, description="Seconds a python tool call may run.")
    python_memory_mb: int = Field(512, description="Address-space cap of a python tool call.")
    python_isolation: Literal["bwrap", "off"] = Field(
        "bwrap",
        description="How python tool code is isolated from swarm: 'bwrap' (bubblewrap: no network, "
        "read-only system, private workspace, a PID namespace and a user id per call) or "
        "'off' (runs as the worker's own user: only for trusted models).",
    )
    python_network: bool = Field(
        False, description="Give python tool code the host's network (it then reaches whatever the worker can)."
    )
    python_max_processes: int = Field(64, ge=1, description="Processes (and threads) one python call may run.")
    python_workspace_mb: int = Field(
        256, ge=1, description="Size of the private tmpfs a python call works in (its copy of the run's files)."
    )
    python_tmp_mb: int = Field(64, ge=1, description="Size of the private /tmp of a python call.")
    python_executor_url: str = Field(
        "",
        description="A `swarm executor` (http://HOST:PORT) that runs python tool calls, so model code runs "
        "where no database, broker or model credentials are. Empty: run them in this process.",
    )
    executor_token: SecretStr = Field(
        SecretStr(""), description="Bearer token between workers and `swarm executor` (both sides set it)."
    )
    tools_enabled: str = Field(
        "",
        description="Comma-separated tool names agents are given (built-ins and plugins of the entry-point "
        "group `swarm.tools`); empty: every tool found.",
    )
    tools_disabled: str = Field(
        "", description="Comma-separated tool names agents are not given, even if found or enabled."
    )
    tool_concurrency: int = Field(32, ge=1, description="Concurrent tool calls per process (embedded mode).")
    plugin_isolation: Literal["bwrap", "off"] = Field(
        "bwrap",
        description="How third-party tool plugins run: 'bwrap' (a process of their own under bubblewrap per call: "
        "read-only system, SWARM_HOME hidden, no network, a clean environment) or 'off' (in the worker process, "
        "as trusted code); see docs/tools.md.",
    )
    plugin_network: str = Field(
        "",
        description="Comma-separated plugin tool names given the host's network under bwrap (the plugin must also "
        "declare network = True); it then reaches whatever the worker can.",
    )
    plugin_timeout: float = Field(60.0, gt=0, description="Seconds one tool plugin call may run (under bwrap).")
    plugin_memory_mb: int = Field(2048, ge=64, description="Address-space cap of a tool plugin call (under bwrap).")
    workspace_max_bytes: int = Field(
        c.WORKSPACE_MAX_BYTES,
        ge=0,
        description="Total bytes of files one run keeps (its workspace). A file a tool call writes past this is not "
        "saved, and the call's result tells the model which files and why.",
    )
    workspace_max_files: int = Field(
        c.WORKSPACE_MAX_FILES,
        ge=0,
        description="Most files one run keeps; beyond it new files are not saved (the model is told).",
    )
    workspace_max_file_bytes: int = Field(
        c.WORKSPACE_MAX_FILE_BYTES,
        ge=0,
        description="Largest single file a tool call may save to its run "
        "(larger ones are not saved; the model is told).",
    )
    workspace_cache_bytes: int = Field(
        c.WORKSPACE_CACHE_BYTES,
        ge=0,
        description="Size of this machine's cache of run files (SWARM_HOME/cache, by sha256), which spares reading "
        "unchanged files from the database on every tool call. 0: no cache.",
    )

    tool_assign_tasks: bool = Field(
        False,
        description="Offer the orchestrator assign_tasks(agent, prompt_template, items): one subagent per item "
        "({{item}} replaced), at most 128, under the same limits as assign_task. Off by default: the model then "
        "sees exactly Kimi K2.5's two orchestration tools. Read by the workers that run model turns.",
    )
    max_subagents: int = Field(c.DEFAULT_MAX_SUBAGENTS, ge=0)
    max_tool_calls: int = Field(c.DEFAULT_MAX_TOOL_CALLS, ge=0)
    max_steps_per_agent: int = Field(c.DEFAULT_MAX_STEPS_PER_AGENT, ge=1)
    max_wall_seconds: float = Field(c.DEFAULT_MAX_WALL_SECONDS, gt=0)
    max_depth: int = Field(c.DEFAULT_MAX_DEPTH, ge=1)
    max_repeats: int = Field(
        c.DEFAULT_MAX_REPEATS,
        ge=1,
        description="Loop guard: how many times one agent may run an identical tool call (same tool, same "
        "arguments). Past it the call is not run and the model gets a tool error saying why. Read by "
        "the workers that run model turns.",
    )
    max_usd: float | None = Field(
        None, gt=0, description="Default USD cap of a run's model calls (none: no cap); `swarm run --max-usd`."
    )
    max_tokens: int | None = Field(
        None, gt=0, description="Default cap of a run's model tokens, in + out (none: no cap); `--max-tokens`."
    )
    llm_max_tokens: int = Field(
        c.DEFAULT_LLM_MAX_TOKENS,
        ge=1,
        description="Output tokens one model call of a run with a budget may produce: sent as max_tokens, "
        "and reserved (with the prompt) as the call's worst case before it starts.",
    )

    lease_seconds: float = Field(c.LEASE_SECONDS, gt=0)
    heartbeat_seconds: float = Field(c.HEARTBEAT_SECONDS, gt=0)
    sweep_interval: float = Field(c.SWEEP_INTERVAL_SECONDS, gt=0)
    republish_after: float = Field(c.REPUBLISH_AFTER_SECONDS, gt=0)
    step_max_crashes: int = Field(
        c.MAX_STEP_ATTEMPTS,
        ge=1,
        description="How many times a step may crash its worker (the process died, or the step's lease ran out "
        "unfinished) before it is given up: a tool call then becomes a tool error for the model, "
        "an LLM step fails its agent. Without this, code that kills its worker would run forever.",
    )
    retention_days: int | None = Field(
        None,
        gt=0,
        description="Delete runs that ended more than this many days ago, with all their rows and files: "
        "the sweeper does it hourly and when it starts, in small batches (unset: runs are kept until "
        "`swarm prune` or `swarm delete`).",
    )

    api_url: str = Field("", description="A swarm server to talk to instead of the local database.")
    api_key: SecretStr = Field(SecretStr(""), description="API key for SWARM_API_URL.")
    api_max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the REST API accepts: a larger Content-Length is answered 413 before "
        "anything is read, and a chunked body is cut off at this size.",
    )
    api_rate_per_minute: int = Field(
        0,
        ge=0,
        description="Requests per minute one API key may make (0: unlimited); beyond it 429 with Retry-After. "
        "Counted in Redis when SWARM_BROKER_URL is set (shared by every API process), else per process.",
    )
    tenant_max_running: int = Field(
        0, ge=0, description="Runs one tenant may have running at once (0: unlimited); a submission beyond it: 429."
    )
    tenant_max_usd_per_day: float | None = Field(
        None,
        gt=0,
        description="USD one tenant's model calls may spend per UTC day, all its runs together (none: no cap); "
        "kept like a run's --max-usd: each call reserves its worst case first, so concurrent runs cannot overshoot.",
    )
    tenant_max_runs_per_day: int = Field(
        0, ge=0, description="Runs one tenant may submit in 24 hours (0: unlimited); a submission beyond it: 429."
    )

    approve_tools: str = Field(
        "",
        description="Tools whose calls wait for a human decision before they run: names or fnmatch patterns, "
        "comma-separated (python,mcp__github__*); a run's --approve adds to them. Empty: none.",
    )
    approval_timeout: str = Field(
        "",
        description="How long an approval request waits (seconds, or 30m, 2h, 1d) before it counts as rejected "
        "with reason 'approval expired'. Empty: it waits until decided (the run's time limit still applies).",
    )

    @field_validator("approve_tools")
    @classmethod
    def _check_approve_tools(cls, v: str) -> str:
        names = [p.strip() for p in v.split(",") if p.strip()]
        for name in names:
            if not re.fullmatch(c.TOOL_PATTERN, name):
                raise ValueError(
                    f"SWARM_APPROVE_TOOLS: {name[:80]!r} is not a tool name or pattern: write names like python "
                    "or patterns like mcp__github__*, separated by commas"
                )
        return ",".join(names)

    @field_validator("approval_timeout")
    @classmethod
    def _check_approval_timeout(cls, v: str) -> str:
        m = re.fullmatch(c.AGE_PATTERN, v.strip().lower())
        if v.strip() and (m is None or float(m.group(1)) <= 0):
            raise ValueError(f"SWARM_APPROVAL_TIMEOUT: {v!r} is not a duration: write e.g. 1800, 30m, 2h or 1d")
        return v.strip()

    mcp_config: str = Field(
        "",
        description="A JSON file of MCP servers (Claude-Desktop-style mcpServers) whose tools every run's agents "
        "get, as mcp__<server>__<tool>; see docs/mcp.md. ${NAME} in its env/headers values is read from the "
        "environment at start.",
    )
    mcp_run_vars: str = Field(
        "",
        description="Comma-separated environment variables a run's own MCP config (swarm run --mcp, the REST "
        "field 'mcp') may reference as ${NAME}; nothing else of the worker's environment reaches it.",
    )
    mcp_isolation: Literal["bwrap", "off"] = Field(
        "bwrap",
        description="How MCP stdio servers run: bwrap (bubblewrap: read-only system, SWARM_HOME hidden, no "
        'network unless the server sets "network": true) or off (a plain child process).',
    )
    _mcp_vars: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object, /) -> None:
        # Read now: the entry points remove secrets from the environment right after the settings.
        names = {n.strip() for n in self.mcp_run_vars.split(",") if n.strip()}
        if self.mcp_config:
            path = Path(self.mcp_config).expanduser()
            if not path.is_file():
                raise ValueError(f"SWARM_MCP_CONFIG={self.mcp_config}: no such file")
            names |= provider_profiles.references(path.read_text())
        self._mcp_vars = {n: os.environ[n] for n in names if n in os.environ}
        if self.providers.strip():
            text, where, toml = provider_profiles.read(self.providers)
            self._profiles = provider_profiles.parse(
                text, where, os.environ, c.PROVIDER_TIERS, toml=toml, default_model=self.model
            )

    def named_providers(self) -> dict[str, provider_profiles.Profile]:
        """The named providers of SWARM_PROVIDERS, their keys read at start (docs/providers.md)."""
        return dict(self._profiles)

    def mcp_variables(self, *, per_run: bool) -> dict[str, str]:
        """What ``${NAME}`` may expand to: a per-run config only SWARM_MCP_RUN_VARS' variables."""
        if not per_run:
            return dict(self._mcp_vars)
        allowed = {n.strip() for n in self.mcp_run_vars.split(",") if n.strip()}
        return {k: v for k, v in self._mcp_vars.items() if k in allowed}

    @field_validator("database_url")
    @classmethod
    def _normalise_db(cls, v: str) -> str:
        # Users paste libpq-style URLs; SQLAlchemy needs the driver named.
        for prefix in ("postgres://", "postgresql://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix) :]
        return v

    @field_validator("provider_tier")
    @classmethod
    def _known_tier(cls, v: str) -> str:
        v = v.strip().lower()
        if v and v not in c.PROVIDER_TIERS:
            raise ValueError(f"unknown provider tier {v!r}; use one of {', '.join(c.PROVIDER_TIERS)} or leave it empty")
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
