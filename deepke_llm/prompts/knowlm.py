"""The KnowLM / ZhiXi legacy prompt style (``knowlm``).

An Alpaca-template prompt with a free-text instruction that lists the candidate types; the model
answers one tuple per line: ``(entity,type)`` for NER, ``(subject,relation,object)`` for RE and
``(trigger,event type,argument#role;argument#role)`` for EE. The wording is KnowLM's / DeepKE
InstructKGC's own; it is data, versioned by the style name.
"""

from __future__ import annotations

from deepke_llm.prompts.chat import Prompt

STYLE = "knowlm"
TEMPLATE = "alpaca"

# Template 0 of each task in zjunlp/DeepKE example/llm/InstructKGC/kg2instruction/*_template.py and
# zjunlp/KnowLM examples/ie_prompt.py (typos included: they are what ZhiXi was trained on).
INSTRUCTIONS: dict[tuple[str, str], str] = {
    ("ner", "zh"): "已知候选的实体类型列表：{schema}，请你根据实体类型列表，从以下输入中抽取出可能存在的实体。请按照{format}的格式回答。",
    ("ner", "en"): "Identify the entities and types in the following text and where entity type list {schema}. Please provide your answerin the form of {format}.",
    ("re", "zh"): "已知候选的关系列表：{schema}，请你根据关系列表，从以下输入中抽取出可能存在的头实体与尾实体，并给出对应的关系三元组。请按照{format}的格式回答。",
    ("re", "en"): "Identify the head entities (subjects) and tail entities (objects) in the following text and provide the corresponding relation triples from relation list {schema}. Please provide your answer as a list of relation triples in the form of {format}.",
    ("ee", "zh"): "已知候选的事件字典：{schema}，请你根据事件字典，从以下输入中抽取出可能存在的事件。请按照{format}的格式回答。",
    ("ee", "en"): "Given the candidate event dictionary: {schema}, please extract any possible events from the input below. Please answer in the format of {format}.",
}

# answer formats of DeepKE's kg2instruction README (one tuple per line)
FORMATS: dict[tuple[str, str], str] = {
    ("ner", "zh"): "(实体,实体类型)",
    ("ner", "en"): "(Entity,Entity Type)",
    ("re", "zh"): "(头实体,关系,尾实体)",
    ("re", "en"): "(Subject,Relation,Object)",
    ("ee", "zh"): "(事件触发词,事件类型,事件论元1#论元角色1;事件论元2#论元角色2)",
    ("ee", "en"): "(Event Trigger,Event Type,Argument1#Argument Role1;Argument2#Argument Role2)",
}


def instruction(task: str, schema_text: str, language: str) -> str:
    """The free-text instruction for ``task`` listing ``schema_text``."""
    try:
        template = INSTRUCTIONS[(task, language)]
    except KeyError:
        raise ValueError(f"no KnowLM instruction for task '{task}' in language '{language}'") from None
    return template.format(schema=schema_text, format=FORMATS[(task, language)])


def build_prompt(task: str, schema_text: str, text: str, language: str) -> Prompt:
    """An Alpaca prompt: instruction + the text as input."""
    return Prompt(user=instruction(task, schema_text, language), input=text, template=TEMPLATE)
