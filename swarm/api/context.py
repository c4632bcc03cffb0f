"""What request handlers share: settings, the store, the Runs service and the event hub."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from swarm.config import Settings
from swarm.runs import Runs
from swarm.store.store import StateStore

if TYPE_CHECKING:
    from swarm.api.events import EventHub
    from swarm.api.ratelimit import KeyRateLimit

#: Not (yet) a Settings field: read here so the dashboard can link to Flower.
FLOWER_URL_ENV = "SWARM_FLOWER_URL"


def flower_url() -> str:
    return os.environ.get(FLOWER_URL_ENV, "").strip()


@dataclass
class ServerContext:
    settings: Settings
    store: StateStore
    runs: Runs
    hub: EventHub
    rate: KeyRateLimit
    flower_url: str = ""


def get_ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx
