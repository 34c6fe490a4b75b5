"""An Ollama ``Modelfile`` for an exported GGUF: our chat template in Go's text/template.

Ollama renders a chat request with the Modelfile's ``TEMPLATE`` (Go ``text/template``; ``.System``
holds the system messages joined, ``.Messages`` the turns with ``.Role`` and ``.Content``) and
tokenizes the result, adding the BOS token itself where the GGUF says so
(``tokenizer.ggml.add_bos_token``). The templates here give, for any system + user + assistant
conversation, exactly the text :func:`deepke_llm.prompts.chat.render_prompt` gives for it (our
BOS rule is the same: added at tokenization), so ``ollama create`` yields a model that
deepke-llm drives through ``--base-url http://127.0.0.1:11434/v1`` with the prompts it was
tuned on. Every line of a template starts with ``{{-`` (the line break before it is trimmed)
and line breaks of the output are Go string constants, so the file stays readable.

Templates exist for ``plain`` (what ``auto`` renders for a model without a chat template of its
own: the default model, the tiny test models) and ``oneke``. ``alpaca`` (KnowLM) keeps the input
apart from the instruction, which chat messages cannot carry; a GGUF with a Jinja chat template
of its own would need that template translated. Both are refused with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepke_llm.io import atomic_path
from deepke_llm.prompts.chat import ONEKE_SYSTEM
from deepke_llm.training.weights.io import WeightsError

__all__ = ["GO_TEMPLATES", "modelfile_text", "write_modelfile"]


def _go_string(text: str) -> str:
    """``text`` as a Go string constant (JSON's escapes are a subset of Go's)."""
    return json.dumps(text, ensure_ascii=False)


GO_TEMPLATES = {
    # plain: "{system}\n\n" when there is one, then "{user}\n{answer}\n\n" per demonstration,
    # then the user turn, and "\n" after it when demonstrations came before
    "plain": "\n".join([
        '{{- if .System }}{{ .System }}{{ "\\n\\n" }}{{ end }}',
        "{{- $answered := false }}",
        "{{- range .Messages }}",
        '{{- if eq .Role "user" }}{{ .Content }}',
        '{{- else if eq .Role "assistant" }}{{ "\\n" }}{{ .Content }}{{ "\\n\\n" }}'
        "{{ $answered = true }}",
        "{{- end }}",
        "{{- end }}",
        '{{- if $answered }}{{ "\\n" }}{{ end }}',
    ]),
    # oneke: LLaMA-2 turns, OneKE's fixed system text in the first (a system message is unused)
    "oneke": "\n".join([
        "{{- $first := true }}",
        "{{- range .Messages }}",
        '{{- if eq .Role "user" }}{{ if $first }}'
        f"{{{{ {_go_string('[INST] ' + ONEKE_SYSTEM)} }}}}"
        '{{ else }}{{ " [INST] " }}{{ end }}{{ .Content }}{{ "[/INST]" }}{{ $first = false }}',
        '{{- else if eq .Role "assistant" }}{{ " " }}{{ .Content }}',
        "{{- end }}",
        "{{- end }}",
    ]),
}


def modelfile_text(gguf_from: str, template: str, stops: list[str]) -> str:
    """A Modelfile: ``FROM``, the Go ``TEMPLATE`` of our chat template ``template``, greedy
    decoding and ``stops``."""
    go = GO_TEMPLATES[template]
    lines = [
        "# Written by `deepke-llm weights export-gguf --ollama`. In this folder:",
        "#   ollama create NAME -f Modelfile",
        "#   deepke-llm extract --base-url http://127.0.0.1:11434/v1 --api-model NAME ...",
        f"# TEMPLATE renders chats exactly as deepke-llm's '{template}' chat template does.",
        f"FROM {gguf_from}",
        f'TEMPLATE """{go}"""',
        "PARAMETER temperature 0",
        *(f"PARAMETER stop {_go_string(stop)}" for stop in stops),
    ]
    return "\n".join(lines) + "\n"


def write_modelfile(directory: str | Path, gguf_path: str | Path,
                    chat_template: str = "auto") -> Path:
    """Write ``directory/Modelfile`` for the GGUF model ``gguf_path``; returns its path.

    ``auto`` picks ``plain`` for a GGUF without a chat template of its own (what deepke-llm's
    ``auto`` renders for it) and refuses one that has its own.
    """
    directory, gguf_path = Path(directory), Path(gguf_path)
    facts = _gguf_chat_facts(gguf_path)
    if chat_template == "auto":
        if facts["template"]:
            raise WeightsError(f"{gguf_path} carries its own (Jinja) chat template, which has no "
                               "Go translation here: pass --chat-template plain or oneke if the "
                               "model was tuned on one, or write the Modelfile's TEMPLATE by hand")
        chat_template = "plain"
    if chat_template not in GO_TEMPLATES:
        raise WeightsError(f"--chat-template {chat_template}: an Ollama template exists for "
                           f"{' and '.join(GO_TEMPLATES)} only (alpaca keeps its input apart "
                           "from the instruction, which chat messages cannot carry)")
    try:
        source = "./" + gguf_path.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        source = str(gguf_path.resolve())
    if '"""' in source:
        raise WeightsError(f"{gguf_path}: a path with \"\"\" cannot be written in a Modelfile")
    target = directory / "Modelfile"
    with atomic_path(target) as tmp:
        tmp.write_text(modelfile_text(source, chat_template, facts["stops"]), encoding="utf-8")
    return target


def _gguf_chat_facts(path: Path) -> dict[str, Any]:
    """The GGUF's own chat template (if any) and its end-of-generation token texts."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def value(key: str) -> Any:
        found = reader.get_field(key)
        return None if found is None else found.contents()

    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    stops = []
    for key in (gguf.Keys.Tokenizer.EOS_ID, gguf.Keys.Tokenizer.EOT_ID):
        token = value(key)
        if tokens is not None and token is not None and tokens.contents(token) not in stops:
            stops.append(tokens.contents(token))
    return {"template": value(gguf.Keys.Tokenizer.CHAT_TEMPLATE), "stops": stops}
