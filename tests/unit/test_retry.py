"""swarm.retry: the one retry policy of everything but the model client."""

from __future__ import annotations

import pytest

from swarm.retry import RetryPolicy, compute_backoff


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, exc: type[BaseException] = ConnectionError):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc(f"failure {calls['n']}")
        return "ok"

    return fn, calls


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(attempts=10, base=0.1, cap=1.0)
    assert [compute_backoff(policy, n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert compute_backoff(policy, 0) == 0.0
    assert compute_backoff(policy, 10_000) == 1.0  # no overflow


def test_jitter_only_shortens_within_its_fraction() -> None:
    policy = RetryPolicy(attempts=3, base=1.0, cap=1.0, jitter=0.25)
    assert compute_backoff(policy, 1, rand=lambda: 0.0) == 1.0
    assert compute_backoff(policy, 1, rand=lambda: 1.0) == pytest.approx(0.75)
    assert all(0.75 <= policy.backoff(1) <= 1.0 for _ in range(200))


def test_call_retries_then_succeeds() -> None:
    clock = Clock()
    fn, calls = failing(2)
    seen: list[tuple[str, int, float]] = []
    policy = RetryPolicy(attempts=3, base=0.5, cap=2.0)
    result = policy.call(
        fn,
        (ConnectionError,),
        sleep=clock.sleep,
        clock=clock,
        on_retry=lambda exc, n, delay: seen.append((str(exc), n, delay)),
    )
    assert result == "ok" and calls["n"] == 3
    assert clock.sleeps == [0.5, 1.0]
    assert seen == [("failure 1", 1, 0.5), ("failure 2", 2, 1.0)]


def test_call_gives_up_after_its_attempts_with_the_last_error() -> None:
    clock = Clock()
    fn, calls = failing(10)
    with pytest.raises(ConnectionError, match="failure 4"):
        RetryPolicy(attempts=4, base=0.5).call(fn, (ConnectionError,), sleep=clock.sleep, clock=clock)
    assert calls["n"] == 4 and len(clock.sleeps) == 3


def test_call_gives_up_at_its_deadline() -> None:
    clock = Clock()
    fn, calls = failing(1000)
    with pytest.raises(ConnectionError):
        RetryPolicy(deadline=10.0, base=1.0, cap=2.0).call(fn, (ConnectionError,), sleep=clock.sleep, clock=clock)
    assert clock.now <= 10.0  # no try starts after the deadline
    assert clock.now + 2.0 > 10.0  # and none is skipped that would have fit
    assert calls["n"] == len(clock.sleeps) + 1


def test_other_errors_are_not_retried() -> None:
    fn, calls = failing(1, ValueError)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=5).call(fn, (ConnectionError,), sleep=lambda s: None)
    assert calls["n"] == 1


def test_exhausted() -> None:
    policy = RetryPolicy(attempts=3, deadline=5.0)
    assert not policy.exhausted(2, 1.0, 1.0)
    assert policy.exhausted(3, 0.0)
    assert policy.exhausted(1, 4.5, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"attempts": 0}, {"attempts": 1, "jitter": 1.5}, {"attempts": 1, "factor": 0.5}, {"attempts": 1, "base": -1}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_executors_store_retries_keep_their_schedules() -> None:
    from swarm.engine.executor import CLAIM_OUTAGE, STORE_OUTAGE

    clock = Clock()
    with pytest.raises(ConnectionError, match="failure 4"):
        CLAIM_OUTAGE.call(failing(9)[0], (ConnectionError,), sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [0.5, 1.0, 2.0]  # then the step is left to the sweeper
    clock = Clock()
    with pytest.raises(ConnectionError):
        STORE_OUTAGE.call(failing(10_000)[0], (ConnectionError,), sleep=clock.sleep, clock=clock)
    assert clock.sleeps[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0])
    assert 58.0 < clock.now <= 60.0  # a minute of outage, at most


def test_the_step_task_does_not_retry_around_the_executor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The executor retries the store itself; the task leaves what is left to the sweeper."""
    from types import SimpleNamespace

    from swarm.exceptions import StoreUnavailable
    from workers import tasks

    calls: list[str] = []

    def execute(step_id: str, later: object = None) -> list[object]:
        calls.append(step_id)
        raise StoreUnavailable("database unavailable: simulated outage")

    executor = SimpleNamespace(execute=execute)
    # commits=None: no model loop in this process, so the step runs whole in the task's thread.
    monkeypatch.setattr(tasks, "context", lambda: SimpleNamespace(executor=lambda: executor, commits=None))
    assert tasks.run_step("s1", run_id="r1", agent_id="a1") == 0
    assert calls == ["s1"]
    (record,) = [r for r in caplog.records if "leaving it to the sweeper" in r.getMessage()]
    assert (record.run_id, record.agent_id, record.step_id) == ("r1", "a1", "s1")  # type: ignore[attr-defined]
