"""Hugging Face datasets bridge: Documents -> Dataset -> Documents round trip, bad rows."""

from __future__ import annotations

import json

from deepke_llm.datasets import from_hf_dataset, to_hf_dataset
from deepke_llm.records import Argument, Document, Entity, Event, Relation, Span

DOCS = [
    Document(id="a", text="Ann met Bo in Rome.", language="en",
             entities=(Entity("person", "Ann", 0, 3), Entity("location", "Rome", 13, 17)),
             meta={"tokens": [[0, 3], [4, 7]], "document": 2}),
    Document(id="b", text="Paris is in France", language="en",
             relations=(Relation("country", Entity("", "Paris", 0, 5, kb_id="Q90"),
                                 Entity("", "France", 12, 18, kb_id="Q142"), kb_relation="P17"),)),
    Document(id="c", text="某公司宣布裁员。", language="zh",
             events=(Event("组织关系-裁员", Span("裁员", 5, 7),
                           (Argument("裁员方", "某公司", 0, 3, type="企业"),
                            Argument("时间", "昨天"))),),
             errors=("one problem",), raw_output=("{}",)),
]


def test_documents_round_trip_through_a_hf_dataset(tmp_path):
    dataset = to_hf_dataset(iter(DOCS), cache_dir=str(tmp_path))  # a one-shot iterator works
    assert dataset.num_rows == 3
    assert dataset[1]["relations"][0]["head"]["kb_id"] == "Q90"
    assert json.loads(dataset[0]["meta"]) == {"tokens": [[0, 3], [4, 7]], "document": 2}
    back = list(from_hf_dataset(dataset))
    assert back == DOCS
    assert [d.to_dict() for d in back] == [d.to_dict() for d in DOCS]  # meta too


def test_plain_record_rows_and_bad_rows(tmp_path):
    from datasets import Dataset

    dataset = Dataset.from_list([
        {"id": "x1", "text": "Rome", "entities": [{"type": "loc", "text": "Rome", "start": 0,
                                                   "end": 4}], "source": "web"},
        {"id": "", "text": "no id", "entities": [], "source": "web"},
    ])
    errors: list[str] = []
    docs = list(from_hf_dataset(dataset, errors=errors, name="mine"))
    assert [(d.id, d.entities[0].text, d.meta) for d in docs] == [("x1", "Rome", {"source": "web"})]
    assert errors == ["mine: row 1: missing or empty field 'id'; row skipped"]
