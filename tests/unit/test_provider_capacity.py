"""Provider capacity: the tier presets and settings, the pure AIMD and window decisions, the
in-process limiter's windows and Retry-After hold, and the simulator's admission."""

from __future__ import annotations

import pytest

from swarm.config import Settings
from swarm.domain.capacity import (
    TIERS,
    ProviderLimits,
    cut,
    estimate_tokens,
    grow,
    provider_id,
    provider_label,
    resolve_limits,
    window_count,
)
from swarm.llm.limiter import AdaptiveLimiter
from swarm.sim.capacity import SimCapacity, SimLimits


def test_tier_preset_gives_its_limits_and_explicit_values_override_it() -> None:
    assert resolve_limits("kimi-tier1") == ProviderLimits(50, 200, 2_000_000)
    assert resolve_limits("kimi-tier1", concurrency=20) == ProviderLimits(20, 200, 2_000_000)
    assert resolve_limits("", rpm=10) == ProviderLimits(None, 10, None)
    assert not resolve_limits().limited
    assert set(TIERS) == {f"kimi-tier{i}" for i in range(6)}


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SWARM_PROVIDER_TIER": "kimi-tier9"}, "unknown provider tier"),
        ({"SWARM_PROVIDER_CONCURRENCY": "0"}, "provider_concurrency"),
        ({"SWARM_PROVIDER_RPM": "-5"}, "provider_rpm"),
        ({"SWARM_PROVIDER_TPM": "0"}, "provider_tpm"),
        ({"SWARM_PROVIDER_LEASE_SECONDS": "0"}, "provider_lease_seconds"),
    ],
)
def test_bad_provider_settings_are_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=needle):
        Settings(_env_file=None)


def test_tier_setting_is_normalised_and_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_PROVIDER_TIER", " KIMI-TIER2 ")
    assert Settings(_env_file=None).provider_tier == "kimi-tier2"


def test_unknown_tier_or_value_below_one_refused_by_the_domain() -> None:
    with pytest.raises(ValueError, match="kimi-tier0"):
        resolve_limits("tier1")
    with pytest.raises(ValueError, match="at least 1"):
        resolve_limits(concurrency=0)


def test_provider_id_keeps_the_key_secret_and_separates_accounts() -> None:
    a = provider_id("https://api.moonshot.ai/v1/", "sk-secret-a", "kimi-k2.5")
    b = provider_id("https://api.moonshot.ai/v1", "sk-secret-b", "kimi-k2.5")
    assert "sk-secret" not in a and a != b
    assert provider_label(a).startswith("api.moonshot.ai/kimi-k2.5#")


def test_aimd_halves_to_the_floor_and_grows_one_slot_per_round() -> None:
    assert cut(50) == 25 and cut(1.5) == 1.0 and cut(1) == 1.0
    limit = 10.0
    for _ in range(10):  # one round of successes: every slot once
        limit = grow(limit, 50)
    assert 10.9 < limit < 11.0
    assert grow(49.99, 50) == 50.0 and grow(50, 50) == 50.0


def test_sliding_window_weights_the_previous_minute_by_what_is_left_of_it() -> None:
    assert window_count(100, 10, 0, 60) == 110
    assert window_count(100, 10, 30, 60) == 60
    assert window_count(100, 10, 60, 60) == 10


def test_token_estimate_is_prompt_plus_output_bound() -> None:
    assert estimate_tokens(4000, None) == 1000
    assert estimate_tokens(4000, 512) == 1512


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_local_limiter_rpm_window_and_tpm_settlement() -> None:
    clock = Clock()
    lim = AdaptiveLimiter(10, rpm=2, tpm=1000, clock=clock, hold=True, increase=None)
    with lim.slot(100):
        lim.on_success(600)  # settled: 600 of the 1000 used
    with lim.slot(100):
        lim.on_success(100)
    assert lim._blocked_for(clock(), 1) == pytest.approx(60.0)  # rpm full for a minute
    clock.t += 61
    assert lim._blocked_for(clock(), 1) == 0.0


def test_local_limiter_tpm_refuses_what_the_window_cannot_hold() -> None:
    clock = Clock()
    lim = AdaptiveLimiter(10, tpm=1000, clock=clock)
    with lim.slot(900):
        pass
    assert lim._blocked_for(clock(), 200) == pytest.approx(60.0)
    assert lim._blocked_for(clock(), 100) == 0.0


def test_local_retry_after_holds_every_call_until_then() -> None:
    clock = Clock()
    lim = AdaptiveLimiter(10, clock=clock, hold=True)
    with lim.slot():
        lim.on_rate_limited(5.0)
    assert lim._blocked_for(clock(), 0) == pytest.approx(5.0)
    assert lim.limit == 5
    view = lim.snapshot()
    assert view.throttled == 1 and view.calls == 1 and view.in_flight == 0


def test_sim_refuses_beyond_its_cap_counts_it_and_keeps_the_peak() -> None:
    cap = SimCapacity(SimLimits(max_concurrency=2))
    assert cap.admit(10) is None and cap.admit(10) is None
    assert cap.admit(10) == 1.0
    cap.release()
    assert cap.admit(10) is None
    stats = cap.stats()
    assert stats["peak_in_flight"] == 2 and stats["throttled"] == 1 and stats["in_flight"] == 2


def test_sim_rpm_and_tpm_answer_with_the_wait_until_the_window_has_room() -> None:
    clock = Clock()
    cap = SimCapacity(SimLimits(rpm=1), clock=clock)
    assert cap.admit(1) is None
    cap.release()
    clock.t += 20.5
    assert cap.admit(1) == 40.0
    cap.set_limits(SimLimits(tpm=100))
    clock.t += 60
    assert cap.admit(90) is None
    cap.release()
    assert cap.admit(20) == 60.0


def test_sim_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        SimLimits(max_concurrency=0)
    with pytest.raises(ValueError, match="expected"):
        SimLimits.from_json({"cap": 3})


@pytest.mark.parametrize(
    ("name", "value"),
    [("SWARM_PROVIDER_TIER", "kimi-tier7"), ("SWARM_PROVIDER_CONCURRENCY", "0"), ("SWARM_PROVIDER_RPM", "-1")],
)
def test_a_command_refuses_bad_provider_config_at_start(tmp_path, name: str, value: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update({name: value, "SWARM_HOME": str(tmp_path), "PYTHONPATH": os.getcwd()})
    done = subprocess.run(
        [sys.executable, "-m", "swarm", "ls"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "invalid configuration" in out and name.removeprefix("SWARM_").lower() in out, out
