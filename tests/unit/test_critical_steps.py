from swarm.domain.critical import AgentSteps, critical_steps, total_steps


def test_w1_shape_has_19_critical_steps():
    # Orchestrator: turn 0 create_subagent, turn 1 launches 100 subagents of 16 steps, turn 2 answers.
    agents = [AgentSteps("o", None, None, 3)] + [AgentSteps(f"s{i}", "o", 1, 16) for i in range(100)]
    assert critical_steps(agents) == 3 + 16
    assert total_steps(agents) == 3 + 1600


def test_only_the_longest_subagent_of_a_stage_counts():
    agents = [AgentSteps("o", None, None, 2), AgentSteps("a", "o", 0, 5), AgentSteps("b", "o", 0, 9)]
    assert critical_steps(agents) == 2 + 9


def test_stages_add_up_and_nesting_recurses():
    agents = [
        AgentSteps("o", None, None, 4),
        AgentSteps("a", "o", 0, 3),
        AgentSteps("b", "o", 2, 2),
        AgentSteps("b1", "b", 1, 7),  # nested: b's length is 2 + 7
    ]
    assert critical_steps(agents) == 4 + 3 + 9


def test_serial_agent_critical_equals_total():
    agents = [AgentSteps("o", None, None, 12)]
    assert critical_steps(agents) == total_steps(agents) == 12


def test_empty_run_is_zero():
    assert critical_steps([]) == 0
