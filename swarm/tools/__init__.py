"""Tools agents can call. The orchestration tools (create_subagent, assign_task) live in the
engine because they change the run's structure; everything here is a plain function of its input."""
