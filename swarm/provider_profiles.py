"""Named model providers of a deployment (``SWARM_PROVIDERS``): parsed and checked at start.

A file (JSON, or TOML when its name ends in ``.toml``), or the same JSON inline::

    {"providers": {"kimi-team-b": {"base_url": "https://api.moonshot.ai/v1",
                                   "api_key": "${TEAM_B_KEY}", "model": "kimi-k2.5",
                                   "tier": "kimi-tier2", "concurrency": 80}}}

A key is only ever a ``${VAR}`` reference, read from the environment when the settings are read
(before ``swarm.hardening`` removes secrets from it): the file may then be world-readable and no
key is written into it. Pure apart from reading the file; on the lowest layer so that
``swarm.config`` can check it when the settings are read (the tier table is passed in).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

#: The provider of the SWARM_LLM_* / SWARM_PROVIDER_* settings; a file may not redefine it.
DEFAULT = "default"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: A ``${NAME}`` reference to an environment variable (SWARM_PROVIDERS keys, MCP env/headers values).
VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KEYS = {"base_url", "api_key", "model", "tier", "concurrency", "rpm", "tpm"}
LIMIT_NAMES = ("concurrency", "rpm", "tpm")


#: Every variable a parsed file named as a key: secrets whatever they are called, so that
#: ``swarm.hardening`` removes them from the environment with the others (TEAM_B_KEY matches none
#: of its name patterns).
_KEY_VARIABLES: set[str] = set()


def key_variables() -> frozenset[str]:
    return frozenset(_KEY_VARIABLES)


@dataclass(frozen=True)
class Profile:
    """One named provider: where to call, with which key and model, and its account's limits
    (the tier's, each overridden by an explicit value; None: no limit)."""

    name: str
    base_url: str
    api_key: SecretStr = field(repr=False)
    model: str
    tier: str = ""
    concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None


def read(value: str) -> tuple[str, str, bool]:
    """(text, where it came from, is TOML) of a SWARM_PROVIDERS value: inline JSON or a file."""
    if value.lstrip().startswith("{"):
        return value, "SWARM_PROVIDERS", False
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"SWARM_PROVIDERS={value}: no such file")
    return path.read_text(encoding="utf-8"), f"SWARM_PROVIDERS ({path})", path.suffix.lower() == ".toml"


def references(text: str) -> set[str]:
    """The environment variables the text references as ``${NAME}``."""
    return set(VAR_REF.findall(text))


def parse(
    text: str,
    where: str,
    env: Mapping[str, str],
    tiers: Mapping[str, tuple[int, int, int]],
    *,
    toml: bool = False,
    default_model: str = "",
) -> dict[str, Profile]:
    """The profiles of ``text``; ValueError naming the place and saying what to write otherwise."""
    try:
        data: Any = tomllib.loads(text) if toml else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{where}: not valid {'TOML' if toml else 'JSON'}: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"providers"} or not isinstance(data["providers"], dict):
        raise ValueError(f'{where}: expected {{"providers": {{"<name>": {{"base_url": ..., "api_key": "${{VAR}}"}}}}}}')
    return {
        name: _profile(name, spec, f"{where}: provider {name!r}", env, tiers, default_model)
        for name, spec in data["providers"].items()
    }


def _profile(
    name: str, spec: Any, where: str, env: Mapping[str, str], tiers: Mapping[str, tuple[int, int, int]], model: str
) -> Profile:
    if not NAME.fullmatch(name) or name == DEFAULT:
        raise ValueError(f"{where}: a name is 1-64 letters, digits, '.', '_' or '-', and not {DEFAULT!r}")
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected an object of {', '.join(sorted(_KEYS))}")  # noqa: TRY004 (a settings error: pydantic reports ValueError)
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    base_url = spec.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"{where}: base_url must be an http(s) URL, e.g. https://api.moonshot.ai/v1")
    key = spec.get("api_key", "")
    if not isinstance(key, str) or (key and not VAR_REF.fullmatch(key)):
        raise ValueError(f"{where}: api_key must be a ${{VAR}} reference (set VAR in the environment), not the key")
    if key:
        var = VAR_REF.fullmatch(key).group(1)  # type: ignore[union-attr]
        if var not in env:
            raise ValueError(f"{where}: api_key references ${{{var}}}, which is not set in the environment")
        key = env[var]
        _KEY_VARIABLES.add(var)
    tier = spec.get("tier", "")
    if not isinstance(tier, str) or (tier and tier not in tiers):
        raise ValueError(f"{where}: unknown tier {tier!r}; use one of {', '.join(tiers)}")
    preset = tiers[tier] if tier else (None, None, None)
    limits: list[int | None] = []
    for label, base in zip(LIMIT_NAMES, preset, strict=True):
        value = spec.get(label)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{where}: {label} must be a whole number of at least 1 (leave it out for no limit)")
        limits.append(value if value is not None else base)
    chosen = spec.get("model", model)
    if not isinstance(chosen, str) or not chosen:
        raise ValueError(f"{where}: model must be a non-empty string")
    return Profile(name, base_url, SecretStr(key), chosen, tier, *limits)
