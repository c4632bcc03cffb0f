"""``word_count``: lines, words and characters of text files in a run's workspace.

An example of swarm's tool plugin interface (docs/tools.md): an :class:`Arguments` model gives the
JSON schema the model sees and validates what it sends; ``uses_workspace`` asks for the run's
files; ``call`` only ever gets valid arguments and returns a :class:`ToolResult`.
"""

from __future__ import annotations

from pydantic import Field

from swarm.tools.plugin import Arguments, ToolContext, ToolPlugin, ToolResult

#: Bytes of one file the tool reads (a larger file is counted up to here, and says so).
MAX_BYTES = 20 * 1024 * 1024


class WordCountArgs(Arguments):
    paths: list[str] = Field(
        description="Text files of the run's workspace, relative to it (e.g. ['notes.txt', 'out/report.md']).",
        min_length=1,
        max_length=50,
    )

    problems = {"paths": "argument 'paths' must be a list of 1 to 50 file paths relative to the workspace"}


class WordCountTool(ToolPlugin[WordCountArgs]):
    """Counts lines, words and characters, like ``wc``."""

    name = "word_count"
    description = (
        "Count the lines, words and characters of text files in the run's workspace (like `wc`). "
        "Give the paths relative to the workspace."
    )
    arguments = WordCountArgs
    uses_workspace = True

    def call(self, args: WordCountArgs, ctx: ToolContext) -> ToolResult:
        root = ctx.workspace.resolve()
        lines, problems = [], []
        for path in args.paths:
            target = (root / path).resolve()
            if not target.is_relative_to(root) or not target.is_file():
                problems.append(f"{path}: no such file in the workspace")
                continue
            with open(target, "rb") as f:
                data = f.read(MAX_BYTES + 1)
            text = data[:MAX_BYTES].decode("utf-8", errors="replace")
            cut = " (first 20 MiB)" if len(data) > MAX_BYTES else ""
            lines.append(f"{path}: {text.count(chr(10))} lines, {len(text.split())} words, {len(text)} characters{cut}")
        if problems and not lines:
            return ToolResult("\n".join(problems), is_error=True)
        return ToolResult("\n".join(lines + problems))
