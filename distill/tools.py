"""Tools of the shipped tool pipeline: the built-in tools, called with a request's text.

The tools themselves (calculator, date parser, booking extractor) live in
:mod:`tinyllm.toolbox`, one implementation that serving runs too. The pipeline's LLM
only picks a tool, so each :class:`Tool` here takes ``{"text": request}``, derives the
tool's arguments from it (:attr:`tinyllm.tools.Tool.from_text`) and makes the call through
:func:`tinyllm.tools.call_tool` (schema check, time limit, errors as :class:`ToolError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tinyllm import toolbox
from tinyllm.tools import Tool as CoreTool
from tinyllm.tools import ToolError, call_tool

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolError", "booking_extractor", "calculator", "date_parser"]


@dataclass(frozen=True)
class Tool:
    """A named function with a JSON schema for its arguments and a description for the LLM."""

    name: str
    description: str
    function: Callable[..., str]
    parameters: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        }
    )

    def __call__(self, arguments: dict[str, Any]) -> str:
        """Validate the arguments against the schema, then compute."""
        import jsonschema

        errors = list(jsonschema.Draft202012Validator(self.parameters).iter_errors(arguments))
        if errors:
            raise ToolError(f"tool {self.name}: bad arguments: {errors[0].message}")
        return self.function(**arguments)


def on_text(tool: CoreTool) -> Callable[[str], str]:
    """``tool`` called with the arguments a request's text gives."""

    def run(text: str) -> str:
        if tool.from_text is None:
            raise ToolError(f"tool {tool.name}: it cannot be called with a request's text")
        return call_tool(tool, tool.from_text(text))

    run.__doc__ = f"The {tool.name} tool on a request's text."
    return run


calculator, date_parser, booking_extractor = (on_text(t) for t in toolbox.BUILTIN_TOOLS)
BUILTIN_TOOLS = tuple(
    Tool(t.name, t.description, fn)
    for t, fn in zip(
        toolbox.BUILTIN_TOOLS, (calculator, date_parser, booking_extractor), strict=True
    )
)
