"""Any worker on any machine: two tool workers with separate working directories and separate
TMPDIRs (nothing shared but Postgres and Redis) run one swarm whose python steps each read the file
the agent's previous step wrote. Files travel through the database, not the disk."""

from __future__ import annotations

import itertools
import time

import pytest
from sqlalchemy import select

from swarm.dispatch.celery import CeleryDispatcher
from swarm.runs.local import ClusterRuns
from swarm.store.models import Step
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, submit, verify_run, w1_task, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

AGENTS, TOOLS = 8, 4


@pytest.mark.timeout(180)
def test_workspace_files_follow_the_run_across_machines(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=4)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    with cluster(tmp_path / "cluster", s) as c:
        c.start_node("brain", queues=("llm",), llm_concurrency=16)
        machines = {}
        for m in ("m1", "m2"):
            home = tmp_path / m
            (home / "tmp").mkdir(parents=True)
            machines[m] = c.start_node(
                m,
                queues=("tool",),
                tool_concurrency=2,
                cwd=home,
                env={"TMPDIR": str(home / "tmp"), "SWARM_HOME": str(home / "swarm")},
            )[0]
        run_id = submit(
            store,
            dispatcher,
            s,
            w1_task(AGENTS, TOOLS, tool="python", extra="scenario=files"),
            agents=AGENTS,
            tools=TOOLS,
        )
        wait_done(store, run_id, 150, c)
        verify_run(store, sim.log(run_id), sim.stats()["by_run"][run_id], run_id, agents=AGENTS, tools=TOOLS)

        with store.read() as conn:
            rows = conn.execute(
                select(Step.agent_id, Step.turn, Step.owner, Step.result, Step.is_error)
                .where(Step.run_id == run_id, Step.tool_name == "python")
                .order_by(Step.agent_id, Step.turn)
            ).all()
        assert len(rows) == AGENTS * TOOLS
        errors = [r.result for r in rows if r.is_error]
        assert not errors, f"python steps failed (a file did not travel?): {errors[:2]}"
        # Both machines ran python steps, and consecutive steps of one agent changed machine.
        machine_of = {pid: m for m, proc in machines.items() for pid in proc.tree()}
        ran_on = [(r.agent_id, machine_of.get(int(r.owner.split(":")[1]))) for r in rows]
        assert {m for _, m in ran_on} == {"m1", "m2"}
        hops = sum(1 for (a1, m1), (a2, m2) in itertools.pairwise(ran_on) if a1 == a2 and m1 != m2)
        assert hops > 0, "no agent's files ever crossed machines"
        files = store.artifacts(run_id)
        for i in range(1, AGENTS + 1):
            _, data = files[f"notes/{i}_{TOOLS - 1}.txt"]
            assert data.decode() == "".join(f"step {k};" for k in range(TOOLS))
        # `swarm files` on the cluster: every file, each with the python step that wrote it.
        runs = ClusterRuns(s, store)
        listed = {f.path: f for f in runs.files(run_id)}
        python_steps = {r["id"] for r in store.steps_timeline(run_id) if r["tool_name"] == "python"}
        assert set(listed) == set(files) and {f.step_id for f in listed.values()} <= python_steps
        info, data = runs.read_file(run_id, f"notes/1_{TOOLS - 1}.txt")
        assert data == files[info.path][1] and info.sha256 == listed[info.path].sha256
        runs.close()
        # Nothing was left in either machine's temp dir or working directory.
        time.sleep(0.5)
        for m in machines:
            # (Workspaces are named after the run; the python fork server's socket directory,
            # swarm-pyfork-*, lives as long as its worker.)
            assert not list((tmp_path / m / "tmp").glob(f"swarm-{run_id[:12]}-*")), f"{m} leaked a workspace"
            assert not (tmp_path / m / "notes").exists()
        print(f"\n[files] {len(rows)} python steps, {hops} machine hops between an agent's consecutive steps")
    dispatcher.close()
    store.engine.dispose()
