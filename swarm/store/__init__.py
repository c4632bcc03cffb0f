"""Persistence. :class:`swarm.store.store.StateStore` is the only code that talks SQL."""
