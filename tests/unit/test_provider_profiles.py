"""SWARM_PROVIDERS is parsed and checked at start, and a run may only lower its provider's limits."""

from __future__ import annotations

import json
import re

import pytest

from swarm.config import Settings
from swarm.constants import PROVIDER_TIERS
from swarm.domain.capacity import ProviderLimits, check_run_limits, run_limits
from swarm.exceptions import InputError, ProviderNotConfigured
from swarm.llm.providers import check_run_provider, known_providers, settings_for
from swarm.provider_profiles import parse

ENV = {"TEAM_B_KEY": "sk-team-b-secret"}


def profiles(spec: dict[str, object], env: dict[str, str] = ENV) -> dict[str, object]:
    return parse(json.dumps({"providers": spec}), "SWARM_PROVIDERS", env, PROVIDER_TIERS, default_model="kimi")


def test_a_profile_reads_its_key_from_the_environment_and_takes_its_tier_with_overrides() -> None:
    (b,) = profiles(
        {"b": {"base_url": "https://x/v1", "api_key": "${TEAM_B_KEY}", "tier": "kimi-tier2", "concurrency": 80}}
    ).values()
    assert b.api_key.get_secret_value() == "sk-team-b-secret" and b.model == "kimi"  # type: ignore[attr-defined]
    assert (b.concurrency, b.rpm, b.tpm) == (80, 500, 3_000_000)  # type: ignore[attr-defined]
    assert "sk-team-b" not in repr(b)


def test_toml_is_read_too() -> None:
    text = '[providers.b]\nbase_url = "https://x/v1"\napi_key = "${TEAM_B_KEY}"\nrpm = 30\n'
    (b,) = parse(text, "f.toml", ENV, PROVIDER_TIERS, toml=True, default_model="kimi").values()
    assert b.rpm == 30 and b.concurrency is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"b": {"base_url": "https://x/v1", "colour": 1}}, "unknown key(s) colour"),
        ({"b": {"base_url": "https://x/v1", "concurrency": 0}}, "concurrency must be a whole number of at least 1"),
        ({"b": {"base_url": "https://x/v1", "rpm": -5}}, "rpm must be a whole number of at least 1"),
        ({"b": {"base_url": "https://x/v1", "tpm": True}}, "tpm must be a whole number"),
        ({"b": {"base_url": "https://x/v1", "tier": "kimi-tier9"}}, "unknown tier 'kimi-tier9'"),
        ({"b": {"base_url": "https://x/v1", "api_key": "${NOT_SET}"}}, "${NOT_SET}, which is not set"),
        ({"b": {"base_url": "https://x/v1", "api_key": "sk-literal"}}, "must be a ${VAR} reference"),
        ({"b": {"api_key": "${TEAM_B_KEY}"}}, "base_url must be an http(s) URL"),
        ({"default": {"base_url": "https://x/v1"}}, "not 'default'"),
        ({"b c": {"base_url": "https://x/v1"}}, "a name is 1-64 letters"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_provider_and_what_to_write(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match="provider '") as err:
        profiles(spec)
    assert message in str(err.value)


def test_bad_json_and_a_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        parse("{nope", "SWARM_PROVIDERS", {}, PROVIDER_TIERS)
    with pytest.raises(ValueError, match=re.escape('expected {"providers"')):
        parse('{"b": {}}', "SWARM_PROVIDERS", {}, PROVIDER_TIERS)


def test_settings_refuse_a_bad_file_at_start_and_keep_the_keys_after_the_environment_is_scrubbed(
    tmp_path, monkeypatch
) -> None:
    path = tmp_path / "providers.json"
    path.write_text(json.dumps({"providers": {"b": {"base_url": "https://x/v1", "api_key": "${TEAM_B_KEY}"}}}))
    monkeypatch.setenv("TEAM_B_KEY", "sk-team-b-secret")
    s = Settings(_env_file=None, providers=str(path))  # type: ignore[call-arg]
    monkeypatch.delenv("TEAM_B_KEY")  # what swarm.hardening does right after
    assert settings_for(s, "b").llm_api_key.get_secret_value() == "sk-team-b-secret"
    with pytest.raises(ValueError, match="no such file"):
        Settings(_env_file=None, providers=str(tmp_path / "missing.json"))  # type: ignore[call-arg]


def test_a_run_can_only_lower_its_providers_limits() -> None:
    account = ProviderLimits(concurrency=50, rpm=200, tpm=None)
    check_run_limits(account, ProviderLimits(concurrency=5, tpm=10_000), "b")  # lower, or where unlimited
    with pytest.raises(ValueError, match="concurrency 80 is above the 50 of provider 'b': a run can only lower"):
        check_run_limits(account, ProviderLimits(concurrency=80), "b")
    with pytest.raises(ValueError, match="at least 1"):
        check_run_limits(account, ProviderLimits(rpm=0), "b")
    # What the run's own limiter enforces: only what is lower than the account (a worker with
    # lower account limits than the submitter's needs no run limiter for them).
    assert run_limits(account, ProviderLimits(concurrency=5, rpm=200, tpm=9)) == ProviderLimits(5, None, 9)
    assert not run_limits(ProviderLimits(concurrency=4), ProviderLimits(concurrency=10)).limited


def test_an_unknown_provider_is_refused_listing_the_known_ones(monkeypatch) -> None:
    monkeypatch.setenv("TEAM_B_KEY", "sk-team-b-secret")
    spec = {"providers": {"b": {"base_url": "https://x/v1", "api_key": "${TEAM_B_KEY}", "concurrency": 8}}}
    s = Settings(_env_file=None, providers=json.dumps(spec), provider_concurrency=20)  # type: ignore[call-arg]
    with pytest.raises(InputError, match="unknown provider 'c'; known providers: b"):
        check_run_provider(s, "c", ProviderLimits())
    with pytest.raises(InputError, match="above the 8 of provider 'b'"):
        check_run_provider(s, "b", ProviderLimits(concurrency=9))
    with pytest.raises(InputError, match="above the 20 of provider 'default'"):
        check_run_provider(s, None, ProviderLimits(concurrency=21))
    assert check_run_provider(s, "b", ProviderLimits(concurrency=2)).llm_base_url == "https://x/v1"
    with pytest.raises(ProviderNotConfigured, match="set the same SWARM_PROVIDERS"):
        settings_for(s, "c")
    rows = known_providers(s)
    assert [r["name"] for r in rows] == ["default", "b"] and rows[1]["concurrency"] == 8
    assert "sk-team-b" not in json.dumps(rows)


def test_a_variable_named_as_a_key_is_a_secret_the_hardening_removes(monkeypatch) -> None:
    from swarm.hardening import is_secret

    monkeypatch.setenv("TEAM_C", "sk-team-c-secret")  # matches none of the secret name patterns
    assert not is_secret("TEAM_C", "sk-team-c-secret")
    spec = {"providers": {"c": {"base_url": "https://x/v1", "api_key": "${TEAM_C}"}}}
    s = Settings(_env_file=None, providers=json.dumps(spec))  # type: ignore[call-arg]
    # What scrub_environment() (swarm.hardening.harden) then removes; the settings keep the key.
    assert is_secret("TEAM_C", "sk-team-c-secret")
    monkeypatch.delenv("TEAM_C")
    assert settings_for(s, "c").llm_api_key.get_secret_value() == "sk-team-c-secret"
