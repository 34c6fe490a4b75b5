"""``deepke-llm`` command line: a thin click group over the commands in :mod:`deepke_llm.commands`.

Commands are imported lazily (only the one being run), so ``deepke-llm --help`` stays fast and
torch/transformers load only when a command needs them. Exit codes: see
:mod:`deepke_llm.commands.common` (0 ok, 1 input errors, 2 usage, 3 backend failures,
130 interrupted).
"""

from __future__ import annotations

import importlib

import click

from deepke_llm import __version__
from deepke_llm.commands.common import DeepkeGroup, fail

__all__ = ["COMMANDS", "fail", "main"]

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "extract": "deepke_llm.commands.extract:extract",
    "parse": "deepke_llm.commands.parse:parse",
    "schemas": "deepke_llm.commands.schemas:schemas",
    "score": "deepke_llm.commands.score:score",
    "evaluate": "deepke_llm.commands.evaluate:evaluate",
    "convert": "deepke_llm.commands.convert:convert",
    "instruct": "deepke_llm.commands.instruct:instruct",
    "pretrain": "deepke_llm.commands.pretrain:pretrain",
    "train": "deepke_llm.commands.train:train",
    "weights": "deepke_llm.commands.weights:weights",
    "kg2instruction": "deepke_llm.commands.kg2instruction:main",
    "serve": "deepke_llm.commands.serve:serve",
    "chat": "deepke_llm.commands.chat:chat",
}

HELP = {
    "extract": "Extract entities, relations or events from text with an LLM.",
    "parse": "Turn raw model outputs from any system into grounded records.",
    "schemas": "List bundled schemas or show one.",
    "score": "Score predicted records against gold records.",
    "evaluate": "Run a benchmark end to end: extract, score, write reports.",
    "convert": "Convert a dataset file (CoNLL, SpERT, OneIE, DuEE, DuIE, BIO, BMES, FewRel, "
               "FewFC, PHEE, FinRE) to records.",
    "instruct": "Turn records + schema into IEPile-format instruction data.",
    "pretrain": "Prepare a pretraining corpus and pretrain.",
    "train": "Instruction tuning (LoRA / full).",
    "weights": "Weight diff, recovery and LoRA merging, streamed shard by shard.",
    "kg2instruction": "Build RE instruction data from a knowledge graph and raw text.",
    "serve": "Serve extraction over HTTP: REST API, web page, batch jobs.",
    "chat": "Interactive terminal session: chat with the model or extract.",
}


class LazyGroup(DeepkeGroup):
    """A click group that imports a subcommand's module only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith(("deepke_llm", "kg2instruction")):
                raise
            return _unavailable(name)
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, HELP.get(name, "")) for name in self.list_commands(ctx)])


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help=HELP.get(name, ""))
    def command() -> None:
        raise click.UsageError(f"'{name}' is not available in this build of deepke-llm")

    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deepke-llm")
# the `deepspeed` launcher puts --local_rank=N right after the module, before the subcommand; the
# rank is also in $LOCAL_RANK, which is what training reads
@click.option("--local_rank", "--local-rank", "local_rank", type=int, hidden=True, expose_value=False)
def main() -> None:
    """deepke-llm: schema-guided knowledge extraction with large language models.

    \b
    Example:
      deepke-llm extract --task ner --schema conll03 --model ./my-model "Japan beat Syria 2-1."
    """


if __name__ == "__main__":  # pragma: no cover
    main()
