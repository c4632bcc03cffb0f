"""Every error swarm raises on purpose derives from :class:`SwarmError`.

::

    SwarmError
    ├── ConfigError                 bad or missing settings (says which variable to set)
    ├── InputError                  bad user / API input (says what to change)
    │   └── NotFound                no such run / agent / key
    ├── StateError                  an illegal transition or a lost claim
    │   ├── InvalidTransition       status machine refused a move
    │   ├── FenceLost               another worker took the step over; our write is refused
    │   └── AlreadyDecided          an approval was decided before; a decision is taken once
    ├── QuotaExceeded               a tenant's quota or a key's rate limit; retry after .retry_after s
    ├── StoreUnavailable            the database cannot be reached (retryable)
    │   └── StoreConflict           a deadlock or serialisation failure; the transaction may be retried
    ├── StoreDataError              the database refused a value (too long, out of range, NUL); not retryable
    ├── LLMError                    anything at the model boundary
    │   ├── LLMRetryableError       worth retrying with backoff
    │   │   ├── LLMTimeout
    │   │   ├── LLMConnectionError
    │   │   ├── LLMRateLimited      HTTP 429 (not quota)
    │   │   └── LLMServerError      HTTP 5xx
    │   └── LLMFatalError           retrying cannot help; ends the run at once
    │       ├── LLMAuthError        HTTP 401 / 403
    │       │   └── ProviderNotConfigured  this worker has no key for the run's provider
    │       ├── LLMQuotaExceeded    out of credit / quota
    │       └── LLMBadRequest       HTTP 400 / 404 / 422, or an unusable response
    └── ToolError                   a tool failed; the message goes back to the model as a tool error

The message defaults to the class docstring, so ``raise LLMAuthError()`` still says something useful.
"""

from __future__ import annotations


class SwarmError(Exception):
    """swarm failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(SwarmError):
    """swarm is misconfigured. Check the SWARM_* environment variables."""


class InputError(SwarmError):
    """The request is invalid."""


class NotFound(InputError):
    """No such object."""


class StateError(SwarmError):
    """The run's state does not allow this."""


class InvalidTransition(StateError):
    """The status machine refused this move."""


class FenceLost(StateError):
    """Another worker took this step over; this worker's result was discarded."""


class AlreadyDecided(StateError):
    """This tool call's approval was already decided; a decision is taken once."""


class QuotaExceeded(SwarmError):
    """A quota or rate limit was reached: retry after ``retry_after`` seconds."""

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(SwarmError):
    """The database cannot be reached. Is it running, and is SWARM_DATABASE_URL right?"""


class StoreConflict(StoreUnavailable):
    """Concurrent transactions conflicted (deadlock); retrying the transaction is safe."""


class StoreDataError(SwarmError):
    """The database refused the data of a write (a value too long, out of range or not storable).
    Writing the same data again fails the same way: the step fails instead of being retried."""


class LLMError(SwarmError):
    """The model endpoint failed."""

    retryable = False
    status_code: int | None = None

    def __init__(
        self, message: str | None = None, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class LLMRetryableError(LLMError):
    """The model endpoint failed in a way that may pass."""

    retryable = True


class LLMTimeout(LLMRetryableError):
    """The model endpoint did not answer in time."""


class LLMConnectionError(LLMRetryableError):
    """The model endpoint could not be reached. Check SWARM_LLM_BASE_URL."""


class LLMRateLimited(LLMRetryableError):
    """The model endpoint is rate limiting us (HTTP 429)."""


class LLMServerError(LLMRetryableError):
    """The model endpoint had a server error (HTTP 5xx)."""


class LLMFatalError(LLMError):
    """The model endpoint refused the request; retrying cannot help."""


class LLMAuthError(LLMFatalError):
    """The model endpoint rejected the API key (HTTP 401/403). Check SWARM_LLM_API_KEY."""


class ProviderNotConfigured(LLMAuthError):
    """This worker does not know the run's provider: set the same SWARM_PROVIDERS on every worker."""


class LLMQuotaExceeded(LLMFatalError):
    """The model account is out of quota or credit. Top up or change SWARM_LLM_API_KEY."""


class LLMBadRequest(LLMFatalError):
    """The model endpoint rejected the request as invalid."""


class ToolError(SwarmError):
    """The tool failed."""
