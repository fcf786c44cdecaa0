"""Helpers of the PyTorch tests: the MXNet child process and output comparisons."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GLUON_SIDE = os.path.join(os.path.dirname(__file__), "gluon_side.py")
TINY = ["dpn_tiny", "resnext_tiny", "se_resnext_tiny", "densenet_tiny", "resnext_tiny_mxnet",
        "se_resnext_tiny_mxnet"]
# The full-size networks; the *_mxnet ones have no timm/torchvision ImageNet file.
BIG = ["dpn68", "dpn92", "dpn98", "dpn107", "dpn131", "resnext101_32x4d", "resnext101_64x4d",
       "se_resnext101_32x4d", "se_resnext101_64x4d", "densenet161", "densenet169"]
BIG_MXNET = ["resnext101_32x4d_mxnet", "resnext101_64x4d_mxnet", "se_resnext101_32x4d_mxnet",
             "se_resnext101_64x4d_mxnet"]


def random_values(role, shape, rng):
    """Random parameter values under which a network computes a well-conditioned function
    of inputs in [0, 1) (so that float32 differences of summation order stay ~1e-6 through
    100 layers instead of being amplified) while every layer matters: batch norms with
    statistics far from 0/1, small variances (a wrong epsilon shows in the outputs) and
    gains about 0.45, He-scaled weights. ``role``: ``running_var``, ``gamma``, ``shift``
    (beta, bias, running mean) or ``weight``."""
    if role == "running_var":
        return rng.uniform(0.005, 0.02, shape)
    if role == "gamma":
        return rng.uniform(0.5, 1.5, shape) * 0.05
    if role == "shift":
        return rng.normal(0, 0.1, shape)
    return rng.normal(0, np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)


def images(seed):
    """Two 180x180 RGB inputs in [0, 1) (see ``random_values``)."""
    return np.random.RandomState(seed).uniform(0, 1, (2, 3, 180, 180)).astype(np.float32)


def run_python(args):
    """Run ``python args...`` from the repository root; its output is shown on failure."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, "python %s failed:\n%s\n%s" % (" ".join(args), result.stdout, result.stderr)
    return result


def require_mxnet():
    """Skip the calling test where MXNet is not installed (``make venv BACKEND=torch``, the
    GPU machines)."""
    if importlib.util.find_spec("mxnet") is None:
        pytest.skip("MXNet is not installed: the Gluon side cannot run")


def run_gluon_side(jobs, folder, label):
    """Run ``jobs`` (see gluon_side.py) in one MXNet child process (`require_mxnet`)."""
    require_mxnet()
    path = os.path.join(str(folder), "%s.jobs.json" % label)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(jobs, f)
    run_python([GLUON_SIDE, path])


def assert_same_outputs(actual, expected, rel=1e-4):
    """Equal up to ``rel`` times the largest magnitude of ``expected`` (float32 sums in
    another order differ by that much, near-zero entries included)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale)
