"""The test suite; `ROOT` is the repository's checkout, where the fixtures live."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
