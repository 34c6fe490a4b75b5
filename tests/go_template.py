"""A reference renderer for Go's text/template, the subset Ollama Modelfiles use, to check the
templates ``weights export-gguf --ollama`` writes without Ollama (no maintained Python package
renders Go templates; tests/test_weights_export_gguf.py also checks against Go's own
text/template through node when DEEPKE_GO_TEMPLATE_NODE_MODULES is set)."""

from __future__ import annotations

import json
import re

GO_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def go_render(template: str, values: dict) -> str:
    """Go text/template, the subset the Modelfiles use: text with {{- -}} trimming, if / else
    if / else / end, range / end, .Field, $.Field, $var :=/= value, eq, "string" and bool
    constants (Go's string escapes are JSON's for what we write). Unknown syntax raises."""
    tokens, pos = [], 0
    for match in GO_ACTION.finditer(template):
        tokens.append(("text", template[pos:match.start()]))
        tokens.append(("action", match.group(2), bool(match.group(1)), bool(match.group(3))))
        pos = match.end()
    tokens.append(("text", template[pos:]))
    for i, token in enumerate(tokens):  # trim markers eat the whitespace of the text beside them
        if token[0] == "action":
            if token[2]:
                tokens[i - 1] = ("text", tokens[i - 1][1].rstrip(" \t\r\n"))
            if token[3]:
                tokens[i + 1] = ("text", tokens[i + 1][1].lstrip(" \t\r\n"))
    tree, rest = _go_parse(tokens, 0)
    assert rest == len(tokens), "unbalanced {{ end }}"
    variables = {"$": values}
    return _go_exec(tree, values, variables)


def _go_parse(tokens: list, i: int, stop: tuple = ()) -> tuple[list, int]:
    nodes = []
    while i < len(tokens):
        token = tokens[i]
        if token[0] == "text":
            nodes.append(("text", token[1]))
            i += 1
            continue
        word = token[1].split(" ", 1)[0]
        if word in stop or token[1].startswith("else"):
            return nodes, i
        if word in ("if", "range"):
            branches, i = [], i
            condition = token[1][len(word):].strip()
            while True:
                body, i = _go_parse(tokens, i + 1, ("end", "else"))
                branches.append((condition, body))
                head = tokens[i][1]
                if head == "end":
                    break
                condition = head[len("else if"):].strip() if head.startswith("else if") else None
            nodes.append((word, branches))
            i += 1
            continue
        nodes.append(("action", token[1]))
        i += 1
    return nodes, i


def _go_value(expr: str, dot, variables: dict):
    parts = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', expr)
    if parts[0] == "eq":
        return _go_value(parts[1], dot, variables) == _go_value(parts[2], dot, variables)
    assert len(parts) == 1, f"unsupported Go template expression {expr!r}"
    word = parts[0]
    if word.startswith('"'):
        return json.loads(word)
    if word in ("true", "false"):
        return word == "true"
    if word.startswith("$."):
        return variables["$"][word[2:]]
    if word.startswith("$"):
        return variables[word]
    if word.startswith("."):
        return dot[word[1:]]
    raise AssertionError(f"unsupported Go template expression {expr!r}")


def _go_exec(nodes: list, dot, variables: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "action":
            assign = re.fullmatch(r"(\$\w+)\s*(:?=)\s*(.+)", node[1])
            if assign:
                assert (assign.group(2) == ":=") != (assign.group(1) in variables)
                variables[assign.group(1)] = _go_value(assign.group(3), dot, variables)
            else:
                out.append(str(_go_value(node[1], dot, variables)))
        elif node[0] == "if":
            for condition, body in node[1]:
                if condition is None or _go_value(condition, dot, variables):
                    out.append(_go_exec(body, dot, variables))
                    break
        else:  # range (no else branch in our templates)
            ((expr, body),) = node[1]
            for item in _go_value(expr, dot, variables):
                out.append(_go_exec(body, item, variables))
    return "".join(out)
