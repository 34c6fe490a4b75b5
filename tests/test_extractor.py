"""Extractor: schema chunks, batching, long-text windows, merging, errors — with a rule backend."""

from __future__ import annotations

import json

from fake_server import rule_answer

from deepke_llm import Extractor
from deepke_llm.backends.base import GenerationConfig
from deepke_llm.records import Document


class RuleBackend:
    """Answers IEPile prompts by rule; counts calls; optional small context."""

    def __init__(self, context_length: int = 4096):
        self.context_length = context_length
        self.calls: list[int] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + text.count('"')

    def generate(self, prompts, config):
        self.calls.append(len(prompts))
        return [rule_answer(p.user) for p in prompts]


def test_extract_text_returns_grounded_records():
    doc = Extractor(RuleBackend(), "conll03", "ner").extract("Yesterday Japan beat Syria.")
    # conll03 chunk 1 is [person, location, organization, else]: the rule fills the first item
    assert {(e.type, e.text, e.start) for e in doc.entities} == {
        ("person", "Yesterday", 0), ("person", "Japan", 10), ("person", "Syria", 21)}
    assert all(doc.text[e.start:e.end] == e.text for e in doc.entities)
    assert doc.language == "en" and len(doc.raw_output) == 1 and doc.errors == ()


def test_every_schema_chunk_is_asked_and_results_are_unioned():
    backend = RuleBackend()
    extractor = Extractor(backend, "ace05", "ee")  # 33 event types -> 8 chunks of 4 (+1)
    doc = extractor.extract("Rebels attacked Homs.")
    assert len(doc.raw_output) == len(extractor.chunks) == 8
    first_types = {c.event_types[0].name for c in extractor.chunks}
    # the rule answers the first event type of each chunk with capitalised words as triggers
    assert {e.type for e in doc.events} == first_types


def test_documents_are_batched_into_backend_calls_of_batch_size_in_order():
    backend = RuleBackend()
    extractor = Extractor(backend, "conll03", "ner", generation=GenerationConfig(batch_size=4))
    docs = [Document(id=f"d{i}", text=f"Item {i} from Paris.") for i in range(42)]
    out = list(extractor.extract_iter(docs))
    assert [d.id for d in out] == [d.id for d in docs]
    assert backend.calls == [4] * 10 + [2]
    assert extractor.stats.documents == 42 and extractor.stats.prompts == 42


def test_each_document_is_yielded_as_soon_as_its_last_prompt_is_answered():
    # a kill loses at most the backend call in flight: after each call, every document it
    # finished has already been handed on
    backend = RuleBackend()
    extractor = Extractor(backend, "ace05", "ee", generation=GenerationConfig(batch_size=3))
    docs = [Document(id=f"d{i}", text=f"Rebels attacked Homs {i}.") for i in range(5)]
    seen_after_calls = []
    for document in extractor.extract_iter(docs):
        seen_after_calls.append((document.id, len(backend.calls)))
    per_doc = len(extractor.chunks)  # 8 prompts per document, 3 per call
    assert seen_after_calls == [(f"d{i}", -(-per_doc * (i + 1) // 3)) for i in range(5)]


def test_a_huge_document_streams_its_windows():
    # prompts are made as they are sent: never more than one batch of window texts alive
    class CountingBackend(RuleBackend):
        def generate(self, prompts, config):
            assert len(prompts) <= config.batch_size
            return super().generate(prompts, config)

    statuses = []
    extractor = Extractor(CountingBackend(context_length=250), "conll03", "ner",
                          generation=GenerationConfig(max_new_tokens=64, batch_size=4))
    extractor.on_batch = statuses.append
    text = " ".join(f"Report {i} mentions Berlin." for i in range(3000))
    doc = extractor.extract(text)
    windows = len(doc.raw_output)
    assert windows > 100 and len(statuses) == -(-windows // 4)
    assert statuses[-1].windows_done == windows and statuses[-1].windows_estimate == windows
    middle = statuses[len(statuses) // 2]
    assert abs(middle.windows_estimate - windows) <= windows * 0.2, "estimate is roughly right"
    assert "window" in middle.describe()
    assert len([e for e in doc.entities if e.text == "Berlin"]) == 3000


def test_long_text_windows_map_offsets_back_and_deduplicate():
    sentences = [f"Report {i} mentions Berlin and nothing else." for i in range(60)]
    text = " ".join(sentences)
    backend = RuleBackend(context_length=250)
    extractor = Extractor(backend, "conll03", "ner", generation=GenerationConfig(max_new_tokens=64))
    doc = extractor.extract(text)
    assert len(doc.raw_output) > 2  # several windows
    berlin = [e for e in doc.entities if e.text == "Berlin"]
    assert [e.start for e in berlin] == [i for i in range(len(text)) if text.startswith("Berlin", i)]
    reports = [e for e in doc.entities if e.text == "Report"]
    assert len(reports) == 60 and len({e.start for e in reports}) == 60
    assert all(text[e.start:e.end] == e.text for e in doc.entities)


def test_prompt_that_cannot_fit_is_an_error_not_a_silent_cut():
    extractor = Extractor(RuleBackend(context_length=60), "conll03", "ner",
                          generation=GenerationConfig(max_new_tokens=40))
    doc = extractor.extract("Japan beat Syria.")
    assert doc.entities == () and doc.raw_output == ()
    assert len(doc.errors) == 1 and "context" in doc.errors[0]


def test_empty_text_and_language_override():
    extractor = Extractor(RuleBackend(), "peoples_daily", "ner", language="en")
    doc = extractor.extract(Document(id="x", text="   "))
    assert doc.errors == ("empty text: nothing to extract",)
    doc = extractor.extract("Zhang met Li in Beijing.")
    prompt = json.loads(extractor.style.build(extractor.task, extractor.chunks[0], "t", "en").user)
    assert prompt["schema"] == ["person", "location", "organization"]
    assert {e.type for e in doc.entities} == {"人物"}  # canonical names come back


def test_knowlm_style_prompt_uses_alpaca_template():
    from deepke_llm.prompts.chat import render_prompt

    extractor = Extractor(RuleBackend(), "conll04", "re", prompt_style="knowlm")
    prompt = extractor.style.build(extractor.task, extractor.chunks[0], "John works for Acme.", "en")
    text = render_prompt(prompt, "auto")
    assert text.startswith("Below is an instruction") and "### Input:\nJohn works for Acme." in text
    assert "(Subject,Relation,Object)" in text


def test_backend_failure_on_one_prompt_is_recorded_not_fatal():
    from deepke_llm.backends.base import BackendError

    class PickyBackend(RuleBackend):
        def generate(self, prompts, config):
            if any("Poison" in p.user for p in prompts):
                if len(prompts) > 1:
                    raise BackendError("server said 400")
                raise BackendError("server said 400: prompt too long")
            return super().generate(prompts, config)

    docs = [Document("a", "Alice is here."), Document("b", "Poison pill."), Document("c", "Carol too.")]
    out = Extractor(PickyBackend(), "conll03", "ner").extract(docs)
    assert [d.entities[0].text for d in (out[0], out[2])] == ["Alice", "Carol"]
    assert out[0].failure is None and out[2].failure is None
    # not finished: a failed document is marked so writers leave it out and --resume redoes it
    assert out[1].entities == () and "prompt too long" in out[1].failure
    assert out[1].to_dict()["failure"] == out[1].failure


def test_prompts_that_succeeded_are_never_sent_again():
    from deepke_llm.backends.base import BackendError

    class PartlyFailing(RuleBackend):
        def __init__(self):
            super().__init__()
            self.sent: list[str] = []

        def generate(self, prompts, config):
            inputs = [json.loads(p.user)["input"] for p in prompts]
            self.sent.extend(inputs)
            outputs = [None if "Poison" in x else rule_answer(p.user)
                       for x, p in zip(inputs, prompts, strict=True)]
            if None in outputs:
                raise BackendError("1 request failed", outputs=outputs,
                                   failures=["HTTP 500" if o is None else None for o in outputs])
            return outputs

    backend = PartlyFailing()
    docs = [Document(str(i), f"Doc {i} Paris.") for i in range(6)] + [Document("p", "Poison.")]
    out = Extractor(backend, "conll03", "ner", generation=GenerationConfig(batch_size=8)).extract(docs)
    assert sorted(backend.sent) == sorted(d.text for d in docs), "each prompt sent exactly once"
    assert [d.failure for d in out] == [None] * 6 + ["no output for schema chunk 'person'...: HTTP 500"]


def test_few_shot_demonstrations_precede_the_prompt_in_every_template():
    from deepke_llm.extractor import pick_demonstrations
    from deepke_llm.prompts.chat import render_prompt
    from deepke_llm.records import Entity

    gold = [Document("g0", "nothing"),
            Document("g1", "Ann lives in Oslo.", entities=(Entity("person", "Ann", 0, 3),
                                                          Entity("location", "Oslo", 13, 17)))]
    demos = pick_demonstrations(gold, "ner", 2)
    assert [d.id for d in demos] == ["g1"]
    extractor = Extractor(RuleBackend(), "conll03", "ner", demonstrations=demos)
    prompt = extractor._build(0, "Bob met Eve.", "en")
    ((demo, answer),) = prompt.demonstrations
    assert json.loads(demo.user)["input"] == "Ann lives in Oslo."
    assert json.loads(answer) == {"person": ["Ann"], "location": ["Oslo"], "organization": [], "else": []}
    plain = render_prompt(prompt, "plain")
    assert plain == f"{demo.user}\n{answer}\n\n{prompt.user}\n"
    oneke = render_prompt(prompt, "oneke")
    assert oneke.startswith("[INST] <<SYS>>") and oneke.endswith(f"[INST] {prompt.user}[/INST]")
    assert [m["role"] for m in prompt.messages()] == ["user", "assistant", "user"]
    doc = extractor.extract("Bob met Eve.")  # the rule backend still sees the last user turn
    assert {e.text for e in doc.entities} == {"Bob", "Eve"}


class CharBackend:
    """One token per character; answers with every known name that occurs in the window."""

    def __init__(self, names, context_length=500):
        self.names = names
        self.context_length = context_length

    def count_tokens(self, text):
        return len(text)

    def generate(self, prompts, config):
        out = []
        for p in prompts:
            window = json.loads(p.user)["input"]
            found = [n for n in self.names if n in window]
            out.append(json.dumps({"person": found, "location": [], "organization": [], "else": []}))
        return out


def test_windows_keep_every_mention_exactly_once_including_long_and_edge_ones():
    """Windows of ~480 characters (overlap >= 72) and mentions of up to 38 characters, placed
    at random: at window starts, across cuts, inside overlaps."""
    import random
    import re

    rng = random.Random(3)
    names = ["Alexander Hamilton", "Bo", "Maria Theresa of the Holy Roman Empire", "Ed Li"]
    for trial in range(30):
        words = []
        for _ in range(rng.randint(100, 300)):
            words.append(rng.choice(names) if rng.random() < 0.15 else rng.choice(["the", "cat", "sat", "on", "a", "mat."]))
        text = " ".join(words)
        doc = Extractor(CharBackend(names, context_length=900), "conll03", "ner",
                        generation=GenerationConfig(max_new_tokens=100)).extract(text)
        expected = sorted((m.start(), m.end()) for n in names for m in re.finditer(re.escape(n), text))
        got = sorted((e.start, e.end) for e in doc.entities)
        assert got == expected, (trial, text)
        assert doc.errors == ()


def test_quotes_and_newlines_are_counted_inside_the_prompt():
    text = 'He said "Bo" \n' * 60  # 840 characters; JSON-escaped in the prompt: 1,020

    class Recording(CharBackend):
        lengths: list[int] = []

        def generate(self, prompts, config):
            self.lengths.extend(len(p.user) + 1 for p in prompts)  # + BOS
            return super().generate(prompts, config)

    backend = Recording(["Bo"], context_length=1000)
    doc = Extractor(backend, "conll03", "ner", generation=GenerationConfig(max_new_tokens=100)).extract(text)
    assert len(backend.lengths) > 1 and max(backend.lengths) + 100 <= 1000
    assert len(doc.entities) == 60 and doc.errors == ()
