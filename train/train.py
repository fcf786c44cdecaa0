"""Fine-tune a network on Cdiscount RecordIO data: ``python train/train.py --help``.

Runs as ``python train/train.py ...`` or ``python -m train.train ...``; the logic lives in
``train.fit`` (the loop) and ``train.args`` (the argument groups).
"""
import os
import sys
import traceback

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # `python train/train.py` puts train/ first on sys.path, where this very file would
    # shadow the `train` package and break `import train.fit`.
    del sys.path[0]

from models import WeightImportError  # noqa: E402
from train import checkpoint, data_iter, devices, fit, step  # noqa: E402
from train.args import parse_args  # noqa: E402

# Errors with a message meant for the user: printed without a traceback.
USER_ERRORS = (data_iter.DataFileError, devices.DeviceError, checkpoint.CheckpointError, fit.NonFiniteLossError,
               step.FreezePatternError, WeightImportError)


def main(argv=None):
    args = parse_args(argv)
    try:
        fit.run(args)
        return 0
    except USER_ERRORS as err:
        print("error: %s" % err, file=sys.stderr)
        code = 2
    except BaseException:
        if os.environ.get("DMLC_ROLE") != "worker":
            raise
        traceback.print_exc()
        code = 1
    if os.environ.get("DMLC_ROLE") == "worker":
        # A failed worker of a distributed job must not wait in the parameter server's
        # shutdown barrier for the other workers, which wait for its gradients: exit at
        # once; the launcher then stops the job.
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
