"""`deepke-llm chat` driven in a real pseudo-terminal (pexpect): free chat over several turns,
extraction tables with offsets, /schema, /json, bad commands, Ctrl-C during a slow generation,
history kept between sessions, and the local-model path."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pexpect
import pytest
from fake_server import knowledge_answer, rule_server

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "Alice Smith works for Acme Corp in Paris."
KNOWLEDGE = {
    "person": ["Alice Smith", "Bob"], "organization": ["Acme Corp"], "location": ["Paris"],
    "work for": [{"subject": "Alice Smith", "object": "Acme Corp"}],
    "attack": [{"trigger": "bombed", "arguments": {"attacker": "rebels", "place": "Homs"}}],
}
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>])")


def plain(text: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    return ANSI.sub("", text).replace("\r", "")


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in ``text``, as lists of cell strings."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in plain(text).splitlines() if line.strip().startswith("│")]


@pytest.fixture()
def server():
    """A scripted server: IEPile queries answered from KNOWLEDGE; chat messages echoed, and a
    message containing "slow" held until the test ends."""
    release = threading.Event()

    def chat(message: str) -> str:
        if "slow" in message:
            release.wait(60)
            return "slow answer"
        return f"echo: {message}"

    with rule_server(answer=knowledge_answer(KNOWLEDGE, chat)) as (url, srv):
        yield url, srv
        release.set()


def spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm",
           "PYTHONUNBUFFERED": "1"}
    return pexpect.spawn(sys.executable, ["-m", "deepke_llm.cli", "chat", *args], env=env,
                         cwd=str(REPO), encoding="utf-8", timeout=60, dimensions=(50, 200),
                         # a CI runner may start us with SIGINT ignored; the child needs it
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def ask(child: pexpect.spawn, line: str, prompt: str) -> str:
    """Type ``line``; the plain output up to the next ``prompt``."""
    child.sendline(line)
    child.expect_exact(prompt)
    return plain(child.before)


def test_chat_turns_extraction_tables_schemas_and_bad_commands(server, tmp_path):
    url, srv = server
    child = spawn(tmp_path, "--base-url", url, "--api-model", "scripted")
    child.expect_exact(">>> ")
    assert "echo: Hello model" in ask(child, "Hello model", ">>> ")
    assert "echo: And again" in ask(child, "And again", ">>> ")
    # the second turn carries the first: one conversation, as chat messages
    assert srv.requests[-1]["messages"] == [
        {"role": "user", "content": "Hello model"},
        {"role": "assistant", "content": "echo: Hello model"},
        {"role": "user", "content": "And again"}]

    ask(child, "/ner", "ner conll03> ")
    rows = table_rows(ask(child, SENTENCE, "ner conll03> "))
    assert rows == [["person", "Alice Smith", "0", "11"], ["organization", "Acme Corp", "22", "31"],
                    ["location", "Paris", "35", "40"]]
    assert all(SENTENCE[int(s):int(e)] == text for _, text, s, e in rows)

    out = ask(child, "/schema nosuch", "ner conll03> ")
    assert [line for line in out.splitlines() if line.startswith("error:")] == [
        line for line in out.splitlines() if "unknown schema 'nosuch'" in line]
    assert "unknown command /frobnicate: type /help" in ask(child, "/frobnicate", "ner conll03> ")
    assert "/schema" in ask(child, "/help", "ner conll03> ")

    ask(child, "/schema conll04", "ner conll04> ")
    ask(child, "/re", "re conll04> ")
    assert table_rows(ask(child, SENTENCE, "re conll04> ")) == [
        ["work for", "Alice Smith", "person", "0-11", "Acme Corp", "organization", "22-31"]]
    ask(child, "/json", "re conll04> ")
    record = json.loads(next(line for line in ask(child, SENTENCE, "re conll04> ").splitlines()
                             if line.startswith("{")))
    assert record["relations"] == [{"type": "work for",
                                    "head": {"type": "person", "text": "Alice Smith", "start": 0,
                                             "end": 11},
                                    "tail": {"type": "organization", "text": "Acme Corp",
                                             "start": 22, "end": 31}}]
    ask(child, "/json", "re conll04> ")
    # a schema without the current task's types is refused, in one line
    assert "error: schema duee has no re types" in ask(child, "/schema duee", "re conll04> ")
    ask(child, "/schema ace05", "re ace05> ")
    text = "Rebels bombed Homs at dawn, the rebels said."
    assert table_rows(ask(child, f"/ee {text}", "ee ace05> ")) == [
        ["attack", "bombed", "7-13", "attacker", "rebels", f"{text.index('rebels')}-38"],
        ["", "", "", "place", "Homs", "14-18"]]
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    history = (tmp_path / "state" / "deepke-llm" / "chat_history").read_text().splitlines()
    assert history[:3] == ["Hello model", "And again", "/ner"] and SENTENCE in history


def test_ctrl_c_cancels_a_slow_generation_and_the_session_goes_on(server, tmp_path):
    url, srv = server
    child = spawn(tmp_path, "--base-url", url, "--api-model", "scripted", "--no-history")
    child.expect_exact(">>> ")
    child.sendline("please be slow")
    deadline = time.monotonic() + 30
    while not any("slow" in str(r.get("messages")) for r in srv.requests):
        assert time.monotonic() < deadline, "the slow request never reached the server"
        time.sleep(0.05)
    child.sendintr()
    child.expect_exact("cancelled")
    child.expect_exact(">>> ")
    child.send("half a line")
    child.expect_exact("half a line")  # echoed by readline: it is reading the line now
    child.sendintr()  # at the prompt: the line is dropped, the session stays
    child.expect_exact(">>> ")
    # the backend is still usable: the next line is answered while the slow one still hangs
    assert "echo: still here" in ask(child, "still here", ">>> ")
    assert srv.requests[-1]["messages"][-1]["content"] == "still here"  # no "half a line"
    out = ask(child, "/ner Bob moved to Paris.", "ner conll03> ")
    assert table_rows(out) == [["person", "Bob", "0", "3"], ["location", "Paris", "13", "18"]]
    assert "slow answer" not in out
    child.sendeof()  # Ctrl-D leaves, without waiting for the abandoned request
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert not (tmp_path / "state" / "deepke-llm" / "chat_history").exists()


def test_local_model_chat_and_extraction_match_the_library(tiny_llama_dir, tmp_path,
                                                           one_torch_thread):
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.backends.registry import load_backend
    from deepke_llm.extractor import Extractor
    from deepke_llm.prompts.chat import Prompt

    child = spawn(tmp_path, "--model", str(tiny_llama_dir), "--engine", "hf", "--threads", "1",
                  "--max-new-tokens", "12", "--no-history")
    child.expect_exact(">>> ", timeout=120)
    answer = ask(child, "Where is Paris?", ">>> ")
    ask(child, "/json", ">>> ")
    out = ask(child, "/ner Alice went to Paris.", "ner conll03> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    backend = load_backend(model=str(tiny_llama_dir), backend="hf")
    expected = backend.generate([Prompt(user="Where is Paris?")],
                                GenerationConfig(max_new_tokens=12, batch_size=1))[0].strip()
    shown = [line for line in answer.splitlines()[1:]
             if line.strip() and "(Ctrl-C to stop)" not in line]  # the spinner's line
    assert "\n".join(shown).strip() == expected
    record = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    doc = Extractor(backend, "conll03", "ner",
                    generation=GenerationConfig(max_new_tokens=12)).extract("Alice went to Paris.")
    assert record["raw_output"] == list(doc.raw_output)
    assert record["entities"] == [e.to_dict() for e in doc.entities]


def test_old_turns_are_dropped_when_the_conversation_outgrows_the_context(server):
    """The session without a terminal: lines in, console text out."""
    import io

    from rich.console import Console

    from deepke_llm.backends.openai import OpenAIBackend
    from deepke_llm.chat import ChatSession

    url, srv = server
    out = io.StringIO()
    # 200 context tokens minus 100 for the answer: room for about two turns of ~40 tokens
    backend = OpenAIBackend(url, "scripted", context_length=200)
    session = ChatSession(backend, Console(file=out, width=120), max_new_tokens=100)
    turns = [f"turn {i}: " + "word " * 30 for i in range(4)]
    for line in turns:
        assert session.handle(line)
    sent = [m["content"] for m in srv.requests[-1]["messages"] if m["role"] == "user"]
    assert sent[-1] == turns[-1].strip() and turns[0].strip() not in sent
    assert 1 <= len(sent) < len(turns)
    assert out.getvalue().count("echo: turn") == 4
    assert session.handle("/clear") and session.turns == []
    assert not session.handle("/quit")


def test_piped_input_runs_without_a_terminal(server, tmp_path):
    import subprocess

    url, _ = server
    lines = f"/ner {SENTENCE}\n/json\n{SENTENCE}\n/nope\n"
    done = subprocess.run([sys.executable, "-m", "deepke_llm.cli", "chat", "--base-url", url,
                           "--api-model", "scripted"], input=lines, capture_output=True,
                          text=True, cwd=str(REPO), timeout=60,
                          env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout and ">>>" not in done.stdout  # no colours, no prompts
    assert ["organization", "Acme Corp", "22", "31"] in table_rows(done.stdout)
    record = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("{")))
    assert [e["text"] for e in record["entities"]] == ["Alice Smith", "Acme Corp", "Paris"]
    assert done.stdout.rstrip().splitlines()[-1] == \
        "error: unknown command /nope: type /help for the commands"
    assert not (tmp_path / "deepke-llm").exists()  # no history without a terminal
