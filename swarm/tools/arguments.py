"""A tool's arguments, declared once as a pydantic model: the model gives both the JSON schema the
LLM sees in ``tools=[…]`` and the validation of what the LLM sent back.

Validation is strict (no ``"3"`` for 3, no ``true`` for 1) but forgiving where the hand-written
checks always were: a whole float such as ``3.0`` counts as an integer, and arguments the schema
does not name are ignored rather than refused, although the schema tells the LLM not to send
them. A mistake goes back to the LLM as one line saying which argument to fix.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from swarm.config import Settings
from swarm.tools.base import ToolContext, ToolResult


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


#: An integer; a whole float (``3.0``, as some models write numbers) is taken as one.
WholeNumber = Annotated[int, BeforeValidator(_whole)]
#: A string with something other than whitespace in it. Not stripped: each tool decides.
NonBlank = Annotated[str, AfterValidator(_not_blank)]


def at_most(limit: int) -> AfterValidator:
    """Clamp to *limit*: asking for more than a tool gives is not a mistake worth a retry."""
    return AfterValidator(lambda n: min(n, limit))


#: Schema keys in the order they are sent (what the LLM has always been shown); the rest follow.
_KEY_ORDER = ("type", "properties", "required", "additionalProperties", "minimum", "maximum")
#: pydantic's additions the LLM does not need: titles repeat the names, and the descriptions
#: already state defaults in words.
_DROPPED = frozenset({"title", "default"})


def _tidy(schema: dict[str, Any]) -> dict[str, Any]:
    def rank(key: str) -> int:
        if key == "description":
            return len(_KEY_ORDER) + 1
        return _KEY_ORDER.index(key) if key in _KEY_ORDER else len(_KEY_ORDER)

    out: dict[str, Any] = {}
    for key in sorted((k for k in schema if k not in _DROPPED), key=rank):
        value = schema[key]
        if key == "properties":
            value = {name: _tidy(prop) for name, prop in value.items()}
        out[key] = value
    return out


class Arguments(BaseModel):
    """Base of every built-in tool's arguments model."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, json_schema_extra={"additionalProperties": False}
    )

    #: What the LLM is told when an argument is missing or unusable, by argument name; ``{value!r}``
    #: in one shows what was sent. An argument not listed gets a message built from pydantic's.
    problems: ClassVar[dict[str, str]] = {}

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The ``parameters`` object of the tool's OpenAI ``tools`` entry."""
        schema = cls.model_json_schema()
        if "$defs" in schema:  # a nested model: its $ref would need resolving for the LLM
            raise TypeError(f"{cls.__name__}: tool arguments must be flat")
        return _tidy(schema)

    @classmethod
    def parse(cls, args: dict[str, Any]) -> Self | str:
        """The validated arguments, or the one-line message that tells the LLM what to fix."""
        try:
            return cls.model_validate(args)
        except ValidationError as exc:
            return cls._problem(exc, args)

    @classmethod
    def _problem(cls, exc: ValidationError, args: dict[str, Any]) -> str:
        first = exc.errors(include_url=False)[0]  # fields are checked in declaration order
        name = str(first["loc"][0]) if first["loc"] else ""
        if name in cls.problems:
            return cls.problems[name].format(value=args.get(name))
        if first["type"] == "missing":
            return f"argument {name!r} is required"
        return f"argument {name!r}: {first['msg'].removeprefix('Value error, ')}"


A = TypeVar("A", bound=Arguments)


class ArgumentsTool(Generic[A]):
    """A tool whose ``parameters`` come from its :class:`Arguments` model and whose :meth:`call`
    only sees valid arguments; bad ones go back to the LLM as a tool error."""

    name: str
    description: str
    uses_workspace = False
    arguments: type[A]
    parameters: dict[str, Any]

    def __init__(self, settings: Settings | None = None) -> None:
        #: The process's settings (a plugin's: without swarm's secrets); None in some tests.
        self.settings = settings

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "arguments" in cls.__dict__:
            cls.parameters = cls.arguments.json_schema()

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        parsed = self.arguments.parse(args)
        if isinstance(parsed, str):
            return ToolResult(parsed, is_error=True)
        return self.call(parsed, ctx)

    def call(self, args: A, ctx: ToolContext) -> ToolResult:
        raise NotImplementedError
