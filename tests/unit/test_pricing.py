"""Prices as configuration: the built-in K2.5 prices, a price file, exact costs, unknown costs."""

from __future__ import annotations

import pytest

from swarm.domain import pricing
from swarm.domain.pricing import Price, Usage
from swarm.exceptions import ConfigError


def test_kimi_k25_is_priced_per_million_tokens_without_a_file():
    table = pricing.load("")
    usage = Usage(input=1_000_000, cached=250_000, output=100_000)
    # 750k missed × $0.60/M + 250k hit × $0.10/M + 100k out × $3.00/M = 0.45 + 0.025 + 0.30
    assert pricing.usd(table.cost("kimi-k2.5", usage)) == 0.775


def test_a_cost_is_exact_whole_picodollars():
    price = Price.per_million("0.60", "0.10", "3.00")
    assert pricing.cost(Usage(input=7, cached=3, output=5), price) == 4 * 600_000 + 3 * 100_000 + 5 * 3_000_000


def test_a_model_without_a_price_has_an_unknown_cost_never_zero():
    table = pricing.load("")
    assert table.cost("some-other-model", Usage(10, 0, 10)) is None
    assert pricing.usd(None) is None


def test_cached_tokens_beyond_the_input_count_as_input():
    price = Price.per_million("1", "0.5", "2")
    assert pricing.cost(Usage(input=10, cached=50, output=0), price) == 10 * 500_000


def test_a_toml_price_file_adds_models_and_overrides_the_builtin(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text(
        '["my-model"]\ninput = 1.25\noutput = 10\n\n["kimi-k2.5"]\ninput = 0.5\ninput_cached = 0.05\noutput = 2\n'
    )
    table = pricing.load(str(path))
    assert table.price("my-model") == Price.per_million("1.25", "1.25", "10")  # no cache price: the miss price
    assert table.price("kimi-k2.5") == Price.per_million("0.5", "0.05", "2")


def test_a_json_price_file_is_read_by_its_suffix(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text('{"gpt-x": {"input": 2.5, "input_cached": 1.25, "output": 10.0}}')
    assert pricing.load(str(path)).price("gpt-x") == Price.per_million("2.5", "1.25", "10")


@pytest.mark.parametrize(
    ("text", "suffix", "expected"),
    [
        (
            '["a"]\ninput = 1\noutput = 1\n["b"]\ninput = "lots"\noutput = 2\n',
            ".toml",
            r"line 4, model 'b', field 'input'",
        ),
        ('["a"]\ninput = 1\noutput = -2\n', ".toml", r"line 1, model 'a', field 'output'.*≥ 0"),
        ('["a"]\ninput = 1\n', ".toml", r"line 1, model 'a': missing field 'output'"),
        ('["a"]\ninput = 1\noutput = 1\ninptu_cached = 1\n', ".toml", r"unknown field 'inptu_cached'"),
        ('["a"]\ninput = 0.0000001\noutput = 1\n', ".toml", r"more than 6 decimals"),
        ('["a"]\ninput = = 1\n', ".toml", r"not valid TOML.*line 2"),
        ('{\n  "a": {"input": 1,\n  "output": }\n}', ".json", r"line 3: not valid JSON"),
    ],
)
def test_a_price_file_with_errors_is_refused_naming_the_line(tmp_path, text, suffix, expected):
    path = tmp_path / f"prices{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as info:
        pricing.load(str(path))
    assert str(path) in str(info.value)


def test_a_missing_price_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"SWARM_PRICES=.*cannot read"):
        pricing.load(str(tmp_path / "nope.toml"))


def test_an_llm_worker_refuses_to_start_with_a_broken_price_file(tmp_path):
    from swarm.config import Settings
    from swarm.constants import QUEUE_LLM
    from workers.celery_app import check_node

    path = tmp_path / "prices.toml"
    path.write_text('["m"]\ninput = 1\noutput = "x"\n')
    s = Settings(
        _env_file=None,  # type: ignore[call-arg]
        broker_url="redis://127.0.0.1:1/0",
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        llm_base_url="http://127.0.0.1:1/v1",
        prices=str(path),
    )
    with pytest.raises(ConfigError, match=r"prices.toml, line 1, model 'm', field 'output'"):
        check_node(s, {QUEUE_LLM})
