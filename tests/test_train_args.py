"""train.args: one device spelling, and runs started with the old one still resume."""
import pytest

from train.args import parse_config
from train.config import changed_options

COMMON = ["--data-train", "x.rec", "--network", "dpn_tiny"]


@pytest.mark.parametrize("old, new", [(["--gpus", "0,1"], ["--devices", "gpu:0,gpu:1"]),
                                      (["--gpus", ""], ["--devices", "cpu"]),
                                      ([], ["--devices", "cpu"])])
def test_old_and_new_device_spellings_give_one_configuration(old, new):
    assert parse_config(COMMON + old) == parse_config(COMMON + new)


def test_a_run_started_with_gpus_resumes_under_devices_without_a_change():
    saved = parse_config(COMMON + ["--gpus", "2,3"]).flat()
    assert saved["gpus"] == "2,3" and "devices" not in saved
    assert changed_options(saved, parse_config(COMMON + ["--devices", "gpu:2,gpu:3"])) == []
    assert changed_options(saved, parse_config(COMMON + ["--devices", "gpu:2"])) == [("gpus", "2,3", "2")]


def test_cpu_and_gpu_together_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        parse_config(COMMON + ["--devices", "cpu,gpu:0"])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "train: error: --devices: cannot mix CPU and GPU devices: give cpu, or gpu:0,gpu:1,..."
