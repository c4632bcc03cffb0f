# One image for every swarm service: api, workers, executor, sweeper, migrate, flower and the simulated model.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# bubblewrap: the sandbox the python tool runs model-written code in (the executor service).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/*

# Dependencies first, so code changes do not reinstall them: install the project's declared
# dependencies from a stub package, then the real code.
COPY pyproject.toml README.md ./
RUN mkdir -p swarm workers migrations && touch swarm/__init__.py workers/__init__.py migrations/__init__.py \
    && pip install . && pip uninstall -y swarm-runtime && rm -rf swarm workers migrations build

COPY swarm ./swarm
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-deps . && rm -rf build

# Never run workers as root: the python tool executes model-written code.
RUN useradd --create-home --uid 10001 swarm
USER swarm
ENV SWARM_HOME=/home/swarm/.swarm
WORKDIR /home/swarm

# `celery -A workers ...` finds the installed `workers` package from any directory.
CMD ["swarm", "--help"]
