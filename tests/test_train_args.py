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


def test_decoding_on_the_device_is_a_pytorch_option_and_older_runs_decoded_in_workers(capsys):
    with pytest.raises(SystemExit) as done:
        parse_config(COMMON + ["--decode-on", "device"])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "train: error: --decode-on device needs --backend torch (MXNet's ImageRecordIter decodes in its own threads)"
    saved = parse_config(COMMON + ["--backend", "torch"]).flat()
    assert saved["decode_on"] == "workers"
    del saved["decode_on"]                      # a checkpoint written before the option
    assert changed_options(saved, parse_config(COMMON + ["--backend", "torch", "--decode-on", "device"])) == []
    assert changed_options({**saved, "decode_on": "workers"},
                           parse_config(COMMON + ["--backend", "torch", "--decode-on", "device"])) == \
        [("decode_on", "workers", "device")]


def test_pytorch_on_several_gpus_starts_one_process_per_gpu_sharing_the_batch(monkeypatch):
    from data.cli import UserError
    from train.train import relaunch_command
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    argv = COMMON + ["--backend", "torch", "--devices", "gpu:0,gpu:1,gpu:2,gpu:3", "--batch-size", "512"]
    command = relaunch_command(parse_config(argv), argv)
    at = command.index("--nproc-per-node")
    assert command[1:3] == ["-m", "torch.distributed.run"] and command[at + 1] == "4"
    assert command[at + 2].endswith("train.py")
    each = parse_config(command[at + 3:])         # what every process parses: the last --batch-size wins
    assert each.optimizer.batch_size == 128 and each.devices.gpus == "0,1,2,3"
    assert relaunch_command(parse_config(COMMON + ["--devices", "gpu:0,gpu:1"]), argv) is None            # MXNet
    assert relaunch_command(parse_config(COMMON + ["--backend", "torch", "--devices", "gpu:0"]), argv) is None
    monkeypatch.setenv("LOCAL_RANK", "0")                                                              # torchrun's
    assert relaunch_command(parse_config(argv), argv) is None
    monkeypatch.delenv("LOCAL_RANK")
    with pytest.raises(UserError, match="--batch-size 510 does not split evenly over 4 GPUs"):
        relaunch_command(parse_config(argv + ["--batch-size", "510"]), argv)
