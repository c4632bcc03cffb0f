from swarm.domain.limits import budget_note, grant, over_budget_message


def test_grant_never_exceeds_remaining_budget():
    g = grant(10, 4, used_tools=1495, max_tools=1500, used_subagents=98, max_subagents=100)
    assert g.tool_calls == 5
    assert g.subagents == 2


def test_grant_everything_when_budget_allows():
    g = grant(3, 1, used_tools=0, max_tools=1500, used_subagents=0, max_subagents=100)
    assert (g.tool_calls, g.subagents) == (3, 1)


def test_exhausted_budget_grants_nothing_even_if_overspent():
    g = grant(3, 3, used_tools=2000, max_tools=1500, used_subagents=200, max_subagents=100)
    assert (g.tool_calls, g.subagents) == (0, 0)


def test_budget_note_only_near_the_end():
    assert budget_note(100, 1500, "tool calls") is None
    note = budget_note(1400, 1500, "tool calls")
    assert note is not None and "100 of 1500" in note


def test_over_budget_message_tells_the_model_what_to_do():
    msg = over_budget_message("tool calls", 1500)
    assert "1500" in msg and "Do not retry" in msg
