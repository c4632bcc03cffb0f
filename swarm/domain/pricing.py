"""What a model call costs: a price table per model, and the exact cost of one call's usage.

Prices are USD per million tokens — input on a cache miss, input on a cache hit, output — as a
provider lists them. Costs are kept as whole **picodollars** (10⁻¹² USD, :data:`PICO`): any price
with up to six decimals is a whole number of picodollars per token, so a call's cost and every sum
of costs (per agent, per run) is exact, and ``cost_usd`` is that integer divided by 10¹².

A model without a price has an unknown cost: ``None``, never 0 (the store keeps it NULL, and a sum
with an unknown part is unknown).

The table comes from :data:`BUILTIN` plus the file ``SWARM_PRICES`` names (TOML or JSON, one table
per model name)::

    ["kimi-k2.5"]
    input = 0.60          # USD per million input tokens, cache miss
    input_cached = 0.10   # cache hit (optional: the miss price)
    output = 3.00         # output tokens, reasoning included

An error in the file is a :class:`~swarm.exceptions.ConfigError` naming the file, the line and the
field, raised when a worker starts rather than at its first model call.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from swarm.exceptions import ConfigError

#: Picodollars per USD: costs are stored as whole picodollars.
PICO = 10**12
#: A price is USD per this many tokens.
PER_TOKENS = 1_000_000
#: The fields of one model's price; ``input_cached`` may be left out.
FIELDS = ("input", "input_cached", "output")


def _pico_per_token(per_million: Decimal) -> int:
    pico = per_million * PICO / PER_TOKENS
    if pico != pico.to_integral_value():
        raise ValueError(per_million)
    return int(pico)


@dataclass(frozen=True)
class Price:
    """One model's prices, in picodollars per token."""

    input: int
    input_cached: int
    output: int

    @classmethod
    def per_million(cls, input: str, input_cached: str, output: str) -> Price:
        return cls(
            _pico_per_token(Decimal(input)), _pico_per_token(Decimal(input_cached)), _pico_per_token(Decimal(output))
        )


@dataclass(frozen=True)
class Usage:
    """The tokens of one model call as the provider reported them. ``cached`` is part of ``input``;
    ``reasoning`` is part of ``output`` (billed as output)."""

    input: int
    cached: int
    output: int
    reasoning: int = 0


#: Prices swarm knows without a file (Moonshot's list prices for Kimi K2.5).
BUILTIN: Mapping[str, Price] = {"kimi-k2.5": Price.per_million("0.60", "0.10", "3.00")}


def cost(usage: Usage, price: Price | None) -> int | None:
    """The exact cost of one call in picodollars; None when the model has no price."""
    if price is None:
        return None
    cached = min(max(usage.cached, 0), max(usage.input, 0))
    missed = max(usage.input, 0) - cached
    return missed * price.input + cached * price.input_cached + max(usage.output, 0) * price.output


def usd(picodollars: int | None) -> float | None:
    """Picodollars as USD (None stays None: unknown)."""
    return None if picodollars is None else picodollars / PICO


def to_pico(usd_amount: float) -> int:
    """USD as whole picodollars (a budget given in USD)."""
    return int(Decimal(str(usd_amount)) * PICO)


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name."""

    prices: Mapping[str, Price]

    def price(self, model: str) -> Price | None:
        return self.prices.get(model)

    def cost(self, model: str, usage: Usage) -> int | None:
        return cost(usage, self.prices.get(model))


def load(path: str | Path | None) -> PriceTable:
    """:data:`BUILTIN` overlaid with the prices in ``path`` (TOML, or JSON by its ``.json``
    suffix); just :data:`BUILTIN` when ``path`` is empty."""
    if not path:
        return PriceTable(dict(BUILTIN))
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"SWARM_PRICES={path}: cannot read the price file ({exc})") from exc
    return PriceTable({**BUILTIN, **parse(text, source=str(path), is_json=p.suffix.lower() == ".json")})


def parse(text: str, *, source: str = "SWARM_PRICES", is_json: bool = False) -> dict[str, Price]:
    """The prices in a price file's ``text``; a ConfigError names the line and field at fault."""
    try:
        data: Any = json.loads(text, parse_float=Decimal) if is_json else tomllib.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}, line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f'{source}: expected a table of models, e.g. ["kimi-k2.5"] input = 0.60 …')
    return {str(model): _price(model, fields, text, source) for model, fields in data.items()}


def _price(model: str, fields: Any, text: str, source: str) -> Price:
    where = f"{source}, line {_line_of(text, model)}, model {model!r}"
    if not isinstance(fields, dict):
        raise ConfigError(f"{where}: expected a table with {', '.join(FIELDS)} (USD per million tokens)")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    for name in ("input", "output"):
        if name not in fields:
            raise ConfigError(f"{where}: missing field {name!r} (USD per million tokens)")
    values = {name: _amount(fields.get(name, fields["input"]), f"{where}, field {name!r}") for name in FIELDS}
    return Price(**values)


def _amount(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ConfigError(f"{where}: {value!r} is not a number of USD per million tokens")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not a number of USD per million tokens") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{where}: {value!r} must be a finite number ≥ 0")
    try:
        return _pico_per_token(amount)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} has more than 6 decimals") from None


def _line_of(text: str, model: str) -> int:
    """The first line that names ``model`` (how an error points into the file)."""
    lines = text.splitlines()
    for needle in (f'"{model}"', f"'{model}'", f"[{model}]", model):
        for number, line in enumerate(lines, start=1):
            if needle in line:
                return number
    return 1
