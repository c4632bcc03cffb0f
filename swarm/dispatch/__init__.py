"""Handing ready steps to workers: in-process threads, or Celery over Redis."""
