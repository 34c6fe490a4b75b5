"""Constrained decoding: answers that always parse, labels only from the schema, mentions only
from the text.

The :class:`~deepke_llm.extractor.Extractor` asks a :class:`ConstraintCompiler` for one
:class:`Constraint` per prompt; backends that apply constraints (``supports_constraints``) take
them beside the prompts:

- local engines (``hf``, ``llamacpp``) mask each row's logits with the automaton of its prompt
  (:class:`~deepke_llm.decoding.tokens.RowConstraint`): structure, names and span copy, all three;
- OpenAI-compatible servers get the answer's JSON Schema as ``response_format`` (vLLM, SGLang,
  llama.cpp server and Ollama enforce it): structure and names; span copy is left to grounding,
  since a server cannot be given "a substring of this text" short of a regex per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deepke_llm.decoding.automaton import NAN, AnswerProgram, Automaton, compile_program
from deepke_llm.decoding.tokens import RowConstraint, TokenIndex

__all__ = ["Constraint", "ConstraintCompiler", "RowConstraint", "TokenIndex",
           "answer_json_schema"]


@dataclass(frozen=True)
class Constraint:
    """What one prompt's answer may be: the byte automaton over its text and, for servers, the
    answer's JSON Schema (IEPile style only)."""

    automaton: Automaton
    json_schema: dict[str, Any] | None = None


class ConstraintCompiler:
    """Compiles each schema chunk's answer program once; makes a prompt's constraint from it."""

    def __init__(self, style: str, task: str) -> None:
        self.style, self.task = style, task
        self._programs: dict[Any, tuple[AnswerProgram | None, dict[str, Any] | None]] = {}

    def for_prompt(self, key: Any, items: Sequence[Any], text: str) -> Constraint | None:
        """The constraint of a prompt asking ``items`` (one chunk, as shown) about ``text``;
        ``key`` names the chunk (and language) for the cache. None: this style is free text."""
        compiled = self._programs.get(key)
        if compiled is None:
            program = compile_program(self.style, self.task, items)
            schema = answer_json_schema(self.task, items) if self.style == "iepile" else None
            compiled = self._programs[key] = (program, schema)
        program, schema = compiled
        if program is None:
            return None
        return Constraint(Automaton.for_text(program, text), schema)


def answer_json_schema(task: str, items: Sequence[Any]) -> dict[str, Any]:
    """JSON Schema of an IEPile answer to one chunk: every key required, nothing else."""
    mention = {"type": "string", "minLength": 1}

    def listing(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": item}

    def obj(properties: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": properties, "required": list(properties),
                "additionalProperties": False}

    properties: dict[str, Any] = {}
    for item in items:
        if task == "ner":
            properties[item] = listing(mention)
        elif task == "re":
            properties[item] = listing(obj({"subject": mention, "object": mention}))
        else:
            argument = {"anyOf": [{"const": NAN}, mention,
                                  {"type": "array", "items": mention, "minItems": 2}]}
            roles = obj({role: argument for role in item.get("arguments", [])})
            properties[item["event_type"]] = listing(obj({"trigger": mention, "arguments": roles}))
    return obj(properties)
