"""data.cli: one error line, exit 2, traceback only with --debug; Ctrl-C without traceback;
the shared device option (and its older spelling); one log format."""
import argparse
import re
import socket
import subprocess
import sys

import pytest

from data.cli import add_device_options, devices_arg, gpu_numbers_of, positive_int

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


def _devices_parser(**options):
    parser = argparse.ArgumentParser(prog="tool")
    add_device_options(parser, **options)
    return parser


def test_devices_one_spelling_everywhere():
    parser = _devices_parser()
    assert parser.parse_args([]).devices == ("cpu",)
    assert parser.parse_args(["--devices", "gpu:0, gpu:1"]).devices == ("gpu:0", "gpu:1")


@pytest.mark.parametrize("text", ["tpu:0", "gpu:x", "gpu 0", ","])
def test_devices_rejects(text, capsys):
    with pytest.raises(SystemExit) as done:
        _devices_parser().parse_args(["--devices", text])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("tool: error: argument --devices: ")


@pytest.mark.parametrize("gpus, devices", [("0,1", ("gpu:0", "gpu:1")), ("", ("cpu",))])
def test_old_gpus_spelling_still_works_with_a_note(gpus, devices, capsys):
    assert _devices_parser(gpus_alias=True).parse_args(["--gpus", gpus]).devices == devices
    note = "tool: note: --gpus %s means --devices %s\n" % (gpus or "''", ",".join(devices))
    assert capsys.readouterr().err == note


def test_old_gpus_spelling_rejects_anything_but_numbers(capsys):
    with pytest.raises(SystemExit):
        _devices_parser(gpus_alias=True).parse_args(["--gpus", "gpu:0"])
    assert "tool: error: argument --gpus: expected GPU numbers" in capsys.readouterr().err


def test_gpu_numbers_of_devices_and_a_mix_is_an_error(capsys):
    parser = _devices_parser()
    assert gpu_numbers_of(parser, ("gpu:0", "gpu:3")) == "0,3"
    assert gpu_numbers_of(parser, ("cpu",)) == ""
    with pytest.raises(SystemExit):
        gpu_numbers_of(parser, ("cpu", "gpu:0"))
    assert "tool: error: --devices: cannot mix CPU and GPU devices" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_numbers_of(parser, ("gpu:1", "gpu:1"))
    assert "tool: error: --devices: gpu:1,gpu:1 lists a GPU twice" in capsys.readouterr().err


LOGGING_TOOL = """
import logging
from data.cli import setup_logging
setup_logging()
logging.getLogger("tool").info("hello")
"""


def test_one_log_format_names_host_logger_and_process():
    done = subprocess.run([sys.executable, "-c", LOGGING_TOOL], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"\S+ \S+ %s tool\[\d+\] INFO hello\n" % re.escape(socket.gethostname()), done.stderr)


def test_the_predictors_old_epoch_spelling_still_works_with_a_note(capsys):
    from predict.predict import build_parser
    required = ["--input", "x.rec", "--models", "run", "--out", "out"]
    assert build_parser().parse_args(required + ["--load-epoch", "3"]).epoch == 3
    assert capsys.readouterr().err == ""
    assert build_parser().parse_args(required + ["--epoch", "3"]).epoch == 3
    assert capsys.readouterr().err == "predict: note: --epoch 3 means --load-epoch 3\n"


def test_training_prediction_and_recipes_share_the_device_option():
    from predict.predict import build_parser as predict_parser
    from train.args import build_parser as train_parser
    from train.recipes import build_parser as recipe_parser
    for parser in (train_parser(), predict_parser(), recipe_parser()):
        devices = [a for a in parser._actions if "--devices" in a.option_strings]
        assert len(devices) == 1 and devices[0].type is devices_arg
