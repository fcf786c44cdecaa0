"""data.cli: one error line, exit 2, traceback only with --debug; Ctrl-C without traceback."""
import argparse
import subprocess
import sys

import pytest

from data.cli import positive_int

TOOL = """
import sys
from data.cli import command
from data.errors import BsonFormatError

@command("tool")
def main(argv=None):
    kind = sys.argv[1]
    if kind == "input":
        raise BsonFormatError("x.bson", 12, 7, "truncated document")
    if kind == "bug":
        return [][1]
    if kind == "interrupt":
        raise KeyboardInterrupt
main()
"""


def _run(*args):
    return subprocess.run([sys.executable, "-c", TOOL, *args], capture_output=True, text=True)


def test_user_error_is_one_line_without_traceback():
    res = _run("input")
    assert res.returncode == 2
    assert res.stderr == "tool: error: x.bson: offset 12, product 7: truncated document\n"


def test_debug_shows_the_traceback_then_the_line():
    res = _run("input", "--debug")
    assert res.returncode == 2
    assert "Traceback (most recent call last)" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith("tool: error: x.bson")


def test_internal_error_names_its_type_and_points_to_debug():
    res = _run("bug")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "internal error: IndexError" in res.stderr and "--debug" in res.stderr


def test_interrupt_exits_130_quietly():
    res = _run("interrupt")
    assert res.returncode == 130 and res.stderr == "tool: interrupted\n"


@pytest.mark.parametrize("text", ["0", "-2", "two"])
def test_positive_int_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)
