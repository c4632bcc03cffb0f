"""``swarm executor``: run python tool calls for workers over HTTP (:mod:`swarm.tools.executor`)."""

from __future__ import annotations

import signal
import sys

import typer

from swarm.cli.common import app, err_console, fail, harden_process, settings, setup_logging


@app.command()
def executor(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8790, help="Port to listen on."),
) -> None:
    """Run python tool calls for workers (POST /v1/python), each in this machine's bubblewrap sandbox.

    Workers send their calls here when SWARM_PYTHON_EXECUTOR_URL=http://HOST:PORT is set.

    Both sides set the same SWARM_EXECUTOR_TOKEN (required unless HOST is 127.0.0.1).

    Give this process no database, broker or model settings: it needs none.
    """
    from swarm.tools.executor import LOOPBACK
    from swarm.tools.executor_server import serve
    from swarm.tools.sandbox_spec import isolation_report

    setup_logging(True)
    s = settings()
    if not s.executor_token.get_secret_value() and host not in LOOPBACK:
        fail("set SWARM_EXECUTOR_TOKEN: without a token `swarm executor` only listens on 127.0.0.1")
    report = isolation_report(s.python_isolation, s.python_network)
    if not report["available"]:
        fail(f"python tool code cannot be isolated here: {report['detail']}")
    held = [
        name
        for name, value in (
            ("SWARM_DATABASE_URL", s.database_url),
            ("SWARM_BROKER_URL", s.broker_url),
            ("SWARM_LLM_API_KEY", s.llm_api_key.get_secret_value()),
        )
        if value
    ]
    if held:
        err_console.print(
            f"[yellow]warning:[/] the executor does not need {', '.join(held)}; "
            "model code is safer where no credentials are"
        )
    harden_process()
    # `docker stop` sends SIGTERM: leave through the normal exit path (the sandbox servers go too).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    err_console.print(
        f"swarm executor on http://{host}:{port}/v1/python ({report['detail']}; {s.tool_concurrency} concurrent calls)"
    )
    try:
        serve(s, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
