"""Reader of MXNet training logs: the reference's real logs (when present) and hand-made ones."""
import glob
import os

import pytest

from helpers import REAL_DIR
from predict import reference
from models.training_log import log_name, natural_key, read_training_log, read_training_logs
from predict.table import log_section, reference_sections, to_markdown

REFERENCE_LOGS = os.path.join(REAL_DIR, "reference_logs")


@pytest.fixture
def reference_logs():
    if not os.path.isdir(REFERENCE_LOGS):
        pytest.skip("reference logs not available (../shared/real/reference_logs)")
    return sorted(glob.glob(os.path.join(REFERENCE_LOGS, "*.log")))


def test_m14_final_accuracy_is_recovered_from_its_log(reference_logs):
    log = read_training_log(os.path.join(REFERENCE_LOGS, "M14_stderr.log"))
    assert log.name == "M14"
    assert log.final == (19, 0.743781)                        # logged as cate1_acc after a resume
    assert log.epochs[3].accuracy == 0.691156                 # logged as accuracy in the first session
    assert sorted(log.epochs) == list(range(20))
    assert log.args["model_prefix"] == "./dpn107/dpn107" and log.args["load_epoch"] == "17"
    assert 240 < log.mean_speed < 250                         # DPN-107: ~246 img/s on 8 GPUs


def test_every_reference_log_merges_into_the_published_table(reference_logs):
    logs = {log.name: log for log in read_training_logs(reference_logs)}
    assert sorted(logs) == [f"M{k:02d}" for k in range(1, 15)]
    # The table's "epochs" is the checkpoint used: its accuracy is the log's at that epoch.
    published = {"M01": (23, 0.660329), "M06": (11, 0.734462), "M08": (18, 0.736697), "M10": (19, 0.738542),
                 "M11": (15, 0.739272), "M13": (13, 0.743221), "M14": (20, 0.743781)}
    for name, (epochs, acc) in published.items():
        assert logs[name].epochs[epochs - 1].accuracy == acc, name
    assert len(logs["M10"].paths) == 7 and logs["M10"].paths[1].endswith("M10_stderr2.log")
    # M10_stderr5.log resumed at epoch 11 after stderr4 had reached 15: 12..15 of stderr4 are gone
    assert logs["M10"].epochs[12].accuracy == 0.734111
    assert logs["M10"].final == (19, 0.738491)


def test_resumed_sessions_replace_the_epochs_they_redo(tmp_path):
    first = tmp_path / "run_stderr.log"
    first.write_text(
        "2017-11-18 00:37:19,017 host root[1] INFO   load_epoch: 0\n"
        "2017-11-18 00:37:19,017 host root[1] INFO   batch_size: 384\n"
        "2017-11-18 01:00:00,000 host root[1] INFO Epoch[0] Batch [100]\tSpeed: 100.0 samples/sec\taccuracy=0.1\n"
        "2017-11-18 02:00:00,000 host root[1] INFO Epoch[0] Train-accuracy=0.300000\n"
        "2017-11-18 02:00:00,000 host root[1] INFO Epoch[0] Time cost=3600.000\n"
        "2017-11-18 02:10:00,000 host root[1] INFO Epoch[0] Validation-accuracy=0.400000\n"
        "INFO:root:Epoch[1] Validation-accuracy=0.500000\n"
        "INFO:root:Epoch[2] Validation-accuracy=0.450000\n")
    second = tmp_path / "run_stderr2.log"
    second.write_text(
        "2017-11-19 00:00:00 host root[2] INFO   load_epoch: 2\n"
        "2017-11-19 00:00:00 host root[2] INFO   batch_size: 512\n"
        "2017-11-19 01:00:00 host root[2] INFO Epoch[2] Batch [100]\tSpeed: 300.0 samples/sec\taccuracy=0.6\n"
        "2017-11-19 02:00:00 host root[2] INFO Epoch[2] Validation-cate1_acc=0.550000\n"
        "2017-11-19 03:00:00 host root[2] INFO Epoch[3] Validation-product_accuracy=0.700000\n")
    third = tmp_path / "run_stderr10.log"
    third.write_text("INFO:root:Epoch[1] Validation-accuracy=0.520000\n")   # restarted from epoch 1
    log, = read_training_logs([str(third), str(second), str(first)])
    assert log.name == "run" and log.paths == [str(first), str(second), str(third)]
    assert log.final == (1, 0.52) and sorted(log.epochs) == [0, 1]
    assert log.args == {"load_epoch": "2", "batch_size": "512"}
    assert log.epochs[0].train == {"accuracy": 0.3} and log.epochs[0].time_cost == 3600.0
    two = read_training_log([str(first), str(second)])
    assert two.validation_accuracies() == [(0, 0.4), (1, 0.5), (2, 0.55)]
    assert two.epochs[3].validation == {"product_accuracy": 0.7} and two.epochs[3].accuracy is None
    assert two.best == (2, 0.55) and two.mean_speed == 200.0


def test_log_names_and_order():
    assert log_name("logs/M10_stderr7.log") == "M10"
    assert log_name("runs/dpn_tiny/train.log") == "dpn_tiny"
    assert sorted(["a_stderr10.log", "a_stderr2.log", "a_stderr.log"], key=natural_key) == \
        ["a_stderr.log", "a_stderr2.log", "a_stderr10.log"]


def test_a_log_without_validation_has_no_final(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("INFO:root:Epoch[0] Train-accuracy=0.5\n")
    with pytest.raises(ValueError, match="no validation accuracy"):
        read_training_log(str(path)).final


def test_the_log_table_shows_the_reference_epochs_value_and_the_readme_slips(reference_logs):
    section = log_section(read_training_logs(reference_logs))
    rows = {row[0]: dict(zip(section.columns, row)) for row in section.rows}
    at, remark = "at the reference's epoch", "vs the reference's table"
    # Neither the final nor the best epoch is the one the reference's table reports for these.
    assert rows["M01"][at] == "0.660329 (epoch 23)" and rows["M10"][at] == "0.738542 (epoch 19)"
    assert rows["M12"][at] == "0.742338 (epoch 17)"
    assert rows["M05"][at] == "not logged (epoch 20)"
    slips = {name for name, row in rows.items() if row[remark]}
    assert slips == set(reference.TABLE_VS_LOGS) == {"M05", "M12"}
    assert rows["M05"][remark] == "the table says 20 epochs; the log ends at epoch 15 with 0.732641"
    assert rows["M12"][remark] == "the table says 0.742388; the log has 0.742338 at epoch 17"


def test_reference_epoch_cells_of_hand_made_logs(tmp_path):
    m12 = tmp_path / "M12_stderr.log"
    m12.write_text("".join(f"INFO:root:Epoch[{e}] Validation-accuracy={0.7 + e / 1000:.6f}\n" for e in range(16))
                   + "INFO:root:Epoch[16] Validation-accuracy=0.742388\n")
    other = tmp_path / "dpn_tiny.log"
    other.write_text("INFO:root:Epoch[0] Validation-accuracy=0.5\n")
    rows = {row[0]: row for row in log_section(read_training_logs([str(m12), str(other)])).rows}
    assert rows["M12"][4:6] == ["0.742388 (epoch 17)", None]      # as the table says: no remark
    assert rows["dpn_tiny"][4:6] == [None, None]                  # not a reference model
    assert "M12 (0.742388 in the table; its log has 0.742338 at epoch 17)" in to_markdown(reference_sections())
