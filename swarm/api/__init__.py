"""swarm's REST API: FastAPI app, auth, live event stream, metrics, web dashboard and HTTP client.

``create_app(settings)`` builds the app; ``swarm serve`` runs it under uvicorn.
"""

from __future__ import annotations

from swarm.api.app import create_app

__all__ = ["create_app"]
