"""Pure domain types and decisions: no I/O, no database, no network."""
