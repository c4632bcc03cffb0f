"""The swarm's logic: what a turn means, and how one durable step is executed."""
