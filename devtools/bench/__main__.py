"""`python -m devtools.bench [NAME ...]`: run the benchmarks on one broker."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from devtools import procs
from devtools.bench import BENCHES, RESULTS_FILE, Figure, table, write_results
from devtools.broker import LocalBroker

log = logging.getLogger("bench")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m devtools.bench")
    parser.add_argument("names", nargs="*", help=f"which to run (default all: {list(BENCHES)})")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHES)}")
    names = args.names or list(BENCHES)
    procs.interrupt_on_sigterm()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="siesa-bench-") as tmp:
        workdir = Path(tmp)
        given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = None
        if not given:
            broker = LocalBroker(port=procs.free_port(), home=workdir / "kafka", run_dir=workdir)
        try:
            bootstrap = given or broker.start()  # type: ignore[union-attr]
            for name in names:
                log.info("benchmark %s: starting", name)
                module = importlib.import_module(BENCHES[name])
                got: list[Figure] = module.run(bootstrap, workdir / name)
                for figure in got:
                    log.info("benchmark %s: %s", name, figure)
                figures.extend(got)
        finally:
            if broker is not None:
                broker.stop()
    print(table(figures))
    write_results(figures)
    print(f"written to {RESULTS_FILE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
