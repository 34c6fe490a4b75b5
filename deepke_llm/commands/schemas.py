"""``deepke-llm schemas``: list the bundled schemas or print one."""

from __future__ import annotations

import json

import click

from deepke_llm.commands.common import load_schema_or_fail


@click.command()
@click.argument("name", required=False)
def schemas(name):
    """List bundled schemas, or print one (a bundled name or a file) as JSON.

    \b
    Example:
      deepke-llm schemas conll04
    """
    from deepke_llm.schema import bundled_schemas

    if name is None:
        for item in bundled_schemas():
            schema = load_schema_or_fail(item)
            counts = [f"{len(v)} {k}" for k, v in (("entity types", schema.entity_types),
                                                    ("relation types", schema.relation_types),
                                                    ("event types", schema.event_types)) if v]
            click.echo(f"{item:15s} {schema.language}  {', '.join(counts)}")
        return
    click.echo(json.dumps(load_schema_or_fail(name).to_dict(), ensure_ascii=False, indent=1))
