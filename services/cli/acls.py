"""`siesa-sync acls`: the ACLs a secured cluster needs for the pipeline, printed (and
with `--apply` created)."""

from __future__ import annotations

import click

from services.cli.common import clean_errors, echo_json, echo_table, kafka_settings
from services.common.service import load_settings
from services.loader.settings import LoaderSettings
from services.ops import acls
from services.transformer.settings import TransformerSettings


def _principals(given: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for item in given:
        service, _, name = item.partition("=")
        if service not in acls.SERVICES or not name:
            raise click.BadParameter(
                f"{item!r}: give SERVICE=PRINCIPAL, SERVICE one of {', '.join(acls.SERVICES)}",
                param_hint="--principal",
            )
        found[service] = name
    return found


@click.command("acls")
@click.option(
    "--principal",
    "principals",
    multiple=True,
    metavar="SERVICE=NAME",
    help="a service's (or the operator's) principal, e.g. loader=User:sync-loader; "
    "default: siesa-sync-<service>",
)
@click.option("--topic-prefix", help="default: KAFKA_TOPIC_PREFIX")
@click.option("--apply", "do_apply", is_flag=True, help="create them (needs ALTER on the cluster)")
@click.option("--json", "as_json", is_flag=True, help="a JSON list, one object per ACL")
@clean_errors
def acls_command(
    principals: tuple[str, ...], topic_prefix: str | None, do_apply: bool, as_json: bool
) -> None:
    """The least-privilege ACLs of every service and of the operator (ALLOW, any host):
    topics and groups by exact name, transactional ids by prefix."""
    kafka = kafka_settings()
    if topic_prefix is not None:
        kafka = kafka.model_copy(update={"topic_prefix": topic_prefix})
    groups = acls.Groups(
        transformer=load_settings(TransformerSettings).group_id,
        loader=load_settings(LoaderSettings).group_id,
    )
    plan = acls.plan(kafka, _principals(principals), groups)
    if as_json:
        echo_json([acl.row() for acl in plan])
    else:
        echo_table(
            f"{len(plan)} ACLs for topic prefix {kafka.topic_prefix!r}",
            ["principal", "operation", "resource", "pattern", "name"],
            [(a.principal, a.operation, a.resource_type, a.pattern, a.name) for a in plan],
        )
    if do_apply:
        created = acls.apply(kafka, plan)
        click.echo(f"applied {created} ACLs", err=as_json)
