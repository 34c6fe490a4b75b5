"""The builtin SFT eval: gold labels from training outputs, IEPile F1 of generated outputs."""

from __future__ import annotations

import json

from deepke_llm.prompts.chat import Prompt
from deepke_llm.training.sft.data import SftRecord
from deepke_llm.training.sft.evaluation import _iepile_f1, label_from_output

NER = '{"person": ["Robert Allenby", "Miguel Martin"], "location": ["Australia"]}'
RE = '{"place of death": [{"subject": "Thomas Edison", "object": "West Orange"}], "founded": []}'
EE = ('{"organization layoff": [{"trigger": "laid off", "arguments": '
      '{"layoff party": "Oracle", "time": "NAN", "victim": ["workers", "staff"]}}]}')


def test_label_from_output_gives_iepile_list_form():
    assert label_from_output("ner", NER) == [
        {"entity": "Robert Allenby", "entity_type": "person"},
        {"entity": "Miguel Martin", "entity_type": "person"},
        {"entity": "Australia", "entity_type": "location"}]
    assert label_from_output("re", RE) == [
        {"head": "Thomas Edison", "relation": "place of death", "tail": "West Orange"}]
    assert label_from_output("ee", EE) == [{
        "event_type": "organization layoff", "event_trigger": "laid off",
        "arguments": [{"argument": "Oracle", "role": "layoff party"},
                      {"argument": "workers", "role": "victim"},
                      {"argument": "staff", "role": "victim"}]}]
    assert label_from_output("ner", "not json") == []


def _record(task: str, output: str, label=None) -> SftRecord:
    return SftRecord(prompt=Prompt(user=f"instruction for {task}"), output=output, id=task,
                     task=task.upper(), label=label)


def test_iepile_f1_per_task():
    records = [_record("ner", NER), _record("re", RE), _record("ee", EE)]
    assert _iepile_f1(records, [NER, RE, EE]) == {
        "ner_f1": 1.0, "re_f1": 1.0, "ee_trigger_f1": 1.0, "ee_argument_f1": 1.0}
    half = json.dumps({"person": ["Robert Allenby"], "location": []})
    scores = _iepile_f1(records[:1], [half])
    assert scores == {"ner_f1": 0.5}  # P = 1/1, R = 1/3
    # a test-layout label wins over the output-derived one; a broken output scores nothing
    labelled = _record("ner", NER, label=[{"entity": "Australia", "entity_type": "location"}])
    assert _iepile_f1([labelled], ['{"location": ["Australia"]}']) == {"ner_f1": 1.0}
    assert _iepile_f1([labelled], ["oops"]) == {"ner_f1": 0.0}
