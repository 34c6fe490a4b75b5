"""A third prompt style is one new module: registered here, run end to end through the Extractor
and ``parse_output`` (prompt -> model answer -> records with offsets) without touching a task."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deepke_llm import Extractor
from deepke_llm.extractor import parse_output
from deepke_llm.prompts.chat import Prompt
from deepke_llm.prompts.styles import _STYLES, Style, get_style, register_style, style_names
from deepke_llm.records import Document, Entity
from deepke_llm.schema import Schema, load_schema
from deepke_llm.tasks import Task, get_task


class MentionLinesStyle(Style):
    """One ``type: mention`` line per mention; works for any task whose answer values are
    mention strings (NER)."""

    def build(self, task: Task, schema: Schema, text: str, language: str) -> Prompt:
        types = ", ".join(task.schema_items(schema, language))
        return Prompt(user=f"List every mention of {types} in the text, one 'type: mention' per "
                           f"line.\nText: {text}")

    def target(self, task: Task, document: Document, schema: Schema, language: str) -> str:
        return "\n".join(f"{shown}: {value}" for shown, value in task.answer(document, schema, language))

    def read(self, task: Task, output: str, schema: Schema, language: str,
             errors: list[str]) -> Iterator[tuple[str, Any]]:
        for line in output.splitlines():
            shown, sep, mention = line.partition(":")
            if not sep:
                errors.append(f"cannot read {line!r} as 'type: mention': dropped")
                continue
            yield shown.strip(), mention.strip()


@pytest.fixture
def mention_lines():
    register_style("mention-lines")(MentionLinesStyle)
    yield get_style("mention-lines")
    del _STYLES["mention-lines"]  # the registry is global: leave it as the other tests expect


class MentionLinesModel:
    """A fake model that answers the new style's prompts by looking at the text."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def generate(self, prompts, config):
        self.prompts.extend(prompts)
        answers = []
        for prompt in prompts:
            text = prompt.user.split("Text: ", 1)[1]
            lines = ["person: Ann" if "Ann" in text else "", "location: Paris",
                     "unicorn: Bob", "no colon here"]
            answers.append("\n".join(line for line in lines if line))
        return answers


def test_a_registered_style_runs_end_to_end_through_the_extractor(mention_lines):
    assert "mention-lines" in style_names()
    model = MentionLinesModel()
    extractor = Extractor(model, "conll03", "ner", prompt_style="mention-lines")
    document = extractor.extract("Ann flew from Paris to Rome.")
    assert model.prompts[0].user.startswith("List every mention of person, location,")
    assert [(e.type, e.text, e.start, e.end) for e in document.entities] == [
        ("person", "Ann", 0, 3), ("location", "Paris", 14, 19)]
    assert document.errors == ("unknown entity type 'unicorn' (not in the schema): dropped",
                               "cannot read 'no colon here' as 'type: mention': dropped")


def test_the_new_style_renders_targets_and_parses_them_back(mention_lines):
    schema, ner = load_schema("conll03"), get_task("ner")
    gold = Document("d", "Ann met Bob in Paris.", entities=(
        Entity("person", "Ann", 0, 3), Entity("location", "Paris", 15, 20),
        Entity("person", "Bob", 8, 11)))
    target = mention_lines.target(ner, gold, schema, "en")
    assert target == "person: Ann\nperson: Bob\nlocation: Paris"
    records, errors = parse_output(ner, target, schema, gold.text, "en", mention_lines)
    assert errors == []
    assert sorted(records, key=lambda e: e.start) == sorted(gold.entities, key=lambda e: e.start)


def test_the_shared_parse_path_keeps_a_new_style_total(mention_lines, monkeypatch):
    """The guard is applied once for every style: a style that raises becomes an error line."""
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(MentionLinesStyle, "read", broken)
    records, errors = mention_lines.parse(get_task("ner"), "person: Ann", load_schema("conll03"), "en")
    assert records == [] and errors == ["ner parser failed on this output (RuntimeError: boom)"]
