"""Kafka's own `kafka-consumer-groups --describe --all-groups`, run from the jars: what
lag tools (Burrow, kminion, Grafana rules) see of the pipeline's consumer groups.

    python -m devtools.groups [--bootstrap-server 127.0.0.1:9092] [--command-config F]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from devtools.broker import run_tool


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    current: int | None  # None: the group committed nothing for it ("-")
    end: int
    lag: int | None


def describe_all(bootstrap: str, command_config: Path | None = None) -> str:
    """The tool's output for every group of the cluster."""
    extra = ["--command-config", str(command_config)] if command_config else []
    done = run_tool(
        "kafka-consumer-groups",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--all-groups",
        *extra,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kafka-consumer-groups failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def parse(output: str) -> list[PartitionLag]:
    """One row per group and partition from `describe_all`'s tables."""
    rows = []
    for line in output.splitlines():
        cells = line.split()
        if len(cells) < 6 or cells[0] == "GROUP" or not cells[2].isdigit():
            continue
        group, topic, partition, current, end, lag = cells[:6]
        rows.append(
            PartitionLag(
                group,
                topic,
                int(partition),
                None if current == "-" else int(current),
                int(end),
                None if lag == "-" else int(lag),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.groups")
    parser.add_argument("--bootstrap-server", default="127.0.0.1:9092")
    parser.add_argument("--command-config", type=Path)
    args = parser.parse_args()
    print(describe_all(args.bootstrap_server, args.command_config), end="")


if __name__ == "__main__":
    main()
