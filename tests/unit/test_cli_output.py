"""Data is printed as text, never interpreted: rich markup, terminal escapes, control
characters and bidi overrides in keys and messages are shown (escaped) in the CLI's
tables, JSON and errors, and in the services' log lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import click
import pytest

from services.cli.common import clean_errors, echo_json, echo_table, printable
from services.cli.mappings import table
from services.common.errors import SyncError
from services.common.logs import configure_logging
from services.transformer.preview import Outcome

HOSTILE = [
    "[/]",
    "[link=http://x]click me[/link]",
    "[bold red]loud[/]",
    ":warning: emoji code",
    "CAM\x1b[31m-RED\x1b[0m",  # a terminal escape
    "OSC\x1b]8;;http://evil\x1b\\link",  # a hyperlink by escape
    "bell\x07 and DEL\x7f and CSI\x9b2J",
    "two\nlines\rand\ttab",
    "bidi \u202eSREVER\u202c \u2066isolate\u2069",
]
SAFE = [
    "[/]",
    "[link=http://x]click me[/link]",
    "[bold red]loud[/]",
    ":warning: emoji code",
    "CAM\\x1b[31m-RED\\x1b[0m",
    "OSC\\x1b]8;;http://evil\\x1b\\link",
    "bell\\x07 and DEL\\x7f and CSI\\x9b2J",
    "two\\nlines\\rand\\ttab",
    "bidi \\u202eSREVER\\u202c \\u2066isolate\\u2069",
]
RAW = ("\x1b", "\x07", "\x7f", "\x9b", "\r", "\t", "\u202e", "\u2066")


@pytest.mark.parametrize(("text", "expected"), list(zip(HOSTILE, SAFE, strict=True)))
def test_printable_escapes_controls_and_keeps_the_rest(text: str, expected: str) -> None:
    assert printable(text) == expected
    assert printable("Camisa ñandú 100% — ok") == "Camisa ñandú 100% — ok"


@pytest.mark.parametrize("terminal", [False, True])
def test_a_table_shows_markup_and_escapes_as_text(
    terminal: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if terminal:  # as on an operator's terminal: colours and hyperlinks on
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("TTY_COMPATIBLE", "1")

    echo_table("dead letters", ["key"], [(text,) for text in HOSTILE])

    out = capsys.readouterr().out
    # Cells may fold over lines: compare without the frame, folds and spaces.
    flat = "".join(c for c in out if not ("\u2500" <= c <= "\u257f" or c.isspace()))
    for shown in SAFE:
        assert shown.replace(" ", "") in flat
    assert "\x1b]8;" not in out  # no hyperlink
    assert "\x1b[31m-RED" not in out  # the data's own escapes are not sent
    for char in RAW[1:] if terminal else RAW:  # on a terminal, rich's own styles use ESC
        assert char not in out
    assert "⚠" not in out  # no emoji from :warning:


def test_json_output_escapes_what_json_leaves_and_reads_back_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    echo_json([{"key": text} for text in HOSTILE])

    out = capsys.readouterr().out
    for char in (*RAW, "\x9b", "\u2069"):
        assert char not in out
    assert json.loads(out) == [{"key": text} for text in HOSTILE]


def test_errors_from_data_are_one_escaped_line_per_problem() -> None:
    @clean_errors
    def command() -> None:
        raise SyncError("tenant acme: item CAM\x1b[2J: bad\nsecond problem \u202e")

    with pytest.raises(click.ClickException) as caught:
        command()

    assert caught.value.message == "tenant acme: item CAM\\x1b[2J: bad\nsecond problem \\u202e"


def test_the_preview_table_escapes_data() -> None:
    outcome = Outcome(
        products=[{"sku": "A\x1b[31m", "name": "[/]", "attributes": {"c": "\u202e"}}],
        rejections=[{"key": "B\x07", "error_class": "mapping", "reason": "x\ny"}],
    )

    out = table(outcome)

    assert "A\\x1b[31m" in out
    assert "[/]" in out
    assert "rejected B\\x07: x\\ny" in out
    for char in RAW:
        assert char not in out


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_log_lines_escape_every_control_character(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    log = logging.getLogger("test.hostile")
    text = "".join(HOSTILE)

    log.warning("dead-lettered %s", text, extra={"key": text})
    log.error("failed", exc_info=ValueError(text))

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # one line each: the data's newlines can't forge a log line
    for line in lines:
        assert all(" " <= char <= "~" for char in line), line  # printable ASCII only
    first = json.loads(lines[0])
    assert first["message"] == f"dead-lettered {text}"
    assert first["key"] == text
    assert text in json.loads(lines[1])["exc_info"]
