"""The tool protocol: Plan-Action-Observation turns in ChatML with Hermes/Qwen function calling.

A turn is an assistant message (a short plan in plain text, then one or more tool calls)
followed by one observation per call. The wire form is the one Qwen2.5/Qwen3 chat templates
render and vLLM's ``hermes`` tool parser reads::

    <|im_start|>assistant
    I will fix the comparison.
    <tool_call>
    {"name": "str_replace", "arguments": {"path": "m.py", "old_str": "a < b", "new_str": "a <= b"}}
    </tool_call><|im_end|>
    <|im_start|>user
    <tool_response>
    m.py: replaced 1 occurrence
    </tool_response><|im_end|>

Everything the model may get wrong (no call, bad JSON, unknown tool, wrong argument types) is
answered by an error observation (``ToolCallError``), never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
_CALL_RE = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|$)", re.S)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: name, description, and its arguments as ``{name: (json type, description, required)}``."""

    name: str
    description: str
    params: dict[str, tuple[str, str, bool]] = field(default_factory=dict)

    def schema(self) -> dict:
        """The OpenAI/Hermes function schema."""
        props = {k: {"type": t, "description": d} | ({"items": {"type": "string"}} if t == "array" else {})
                 for k, (t, d, _) in self.params.items()}
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": props,
                           "required": [k for k, (_, _, req) in self.params.items() if req]}}}


TOOLS: dict[str, ToolSpec] = {t.name: t for t in (
    ToolSpec("bash", "Run a shell command in the repository root; returns exit code, stdout and stderr.",
             {"command": ("string", "The command.", True)}),
    ToolSpec("read_file", "Read a text file of the repository (optionally lines start..end, 1-based).",
             {"path": ("string", "Path relative to the repository root.", True),
              "start_line": ("integer", "First line.", False), "end_line": ("integer", "Last line.", False)}),
    ToolSpec("write_file", "Create or overwrite a file with the given content.",
             {"path": ("string", "Path relative to the repository root.", True),
              "content": ("string", "The whole new content.", True)}),
    ToolSpec("str_replace", "Replace the one occurrence of old_str in a file by new_str.",
             {"path": ("string", "Path relative to the repository root.", True),
              "old_str": ("string", "Exact text to replace; must occur exactly once.", True),
              "new_str": ("string", "Replacement text.", True)}),
    ToolSpec("run_tests", "Run the task's tests (or the given test ids) and report which pass.",
             {"tests": ("array", "Test ids, e.g. tests/test_m.py::test_f (default: the task's tests).", False)}),
    ToolSpec("submit", "Finish: the current state of the repository is the answer.", {}),
)}
_PY_TYPES = {"string": str, "integer": int, "array": list}


@dataclass(frozen=True)
class ToolCall:
    """A parsed, validated call."""

    name: str
    arguments: dict

    def render(self) -> str:
        """The call as the model writes it (Hermes JSON between tool_call tags)."""
        body = json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)
        return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


@dataclass(frozen=True)
class ToolCallError:
    """A call the model got wrong; ``message`` becomes the error observation."""

    message: str


def system_prompt(style: str = "hermes", tools: dict[str, ToolSpec] | None = None) -> str:
    """The system message listing the tools.

    Args:
        style: ``hermes`` (Qwen2.5's wording with full JSON schemas) or ``compact`` (one line per
            tool: for tiny char-level demo models whose context is short).
        tools: the tool set (default: all of :data:`TOOLS`).
    """
    tools = tools or TOOLS
    if style == "compact":
        lines = [f"{t.name}({', '.join(t.params)})" for t in tools.values()]
        return "Fix the repository. Tools: " + "; ".join(lines) + ". Call one tool per turn."
    if style != "hermes":
        raise ValueError(f"agent.systemPrompt: unknown style {style!r} (hermes or compact)")
    schemas = "\n".join(json.dumps(t.schema(), ensure_ascii=False) for t in tools.values())
    return (
        "You are a software engineering agent working in a repository. Plan briefly, act with tools, "
        "read the observations, and call submit when the task's tests pass.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        f"{schemas}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def _validate(obj, tools: dict[str, ToolSpec]) -> ToolCall | ToolCallError:
    if not isinstance(obj, dict) or "name" not in obj:
        return ToolCallError('tool call: expected a JSON object {"name": ..., "arguments": {...}}')
    name, args = obj["name"], obj.get("arguments", {})
    if isinstance(args, str):  # some models emit arguments as a JSON string (OpenAI wire form)
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return ToolCallError(f"tool call {name}: arguments is not a JSON object")
    if name not in tools:
        return ToolCallError(f"tool call: unknown tool {name!r} (tools: {', '.join(tools)})")
    if not isinstance(args, dict):
        return ToolCallError(f"tool call {name}: arguments must be a JSON object")
    spec = tools[name]
    for key, value in args.items():
        if key not in spec.params:
            return ToolCallError(f"tool call {name}: unknown argument {key!r} (arguments: {', '.join(spec.params)})")
        want = _PY_TYPES[spec.params[key][0]]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            return ToolCallError(f"tool call {name}: argument {key!r} must be a {spec.params[key][0]}")
    missing = [k for k, (_, _, req) in spec.params.items() if req and k not in args]
    if missing:
        return ToolCallError(f"tool call {name}: missing argument(s) {', '.join(missing)}")
    return ToolCall(name, args)


def parse_tool_calls(text: str, tools: dict[str, ToolSpec] | None = None) -> list[ToolCall | ToolCallError]:
    """Every ``<tool_call>`` block of an assistant message, validated; an unclosed last block (a
    truncated turn) is parsed too. No block at all gives one :class:`ToolCallError`."""
    tools = tools or TOOLS
    blocks = _CALL_RE.findall(text)
    if not blocks:
        return [ToolCallError(f"no tool call: write {TOOL_CALL_OPEN}{{\"name\": ..., \"arguments\": {{...}}}}"
                              f"{TOOL_CALL_CLOSE}, or call submit")]
    out: list[ToolCall | ToolCallError] = []
    for block in blocks:
        try:
            obj = json.loads(block.strip())
        except json.JSONDecodeError as exc:
            out.append(ToolCallError(f"tool call: invalid JSON ({exc.msg} at char {exc.pos})"))
            continue
        out.append(_validate(obj, tools))
    return out


def plan_text(text: str) -> str:
    """The plan part of an assistant message (text before the first tool call)."""
    return text.split(TOOL_CALL_OPEN, 1)[0].strip()


def render_observation(content: str) -> str:
    """The body of a tool-role message as rendered in the chat (Qwen's tool_response wrapper)."""
    return f"{TOOL_RESPONSE_OPEN}\n{content}\n{TOOL_RESPONSE_CLOSE}"
