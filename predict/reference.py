"""Published figures of the 3rd-place reference solution, shown beside ours in the table.

Public numbers from the reference's write-up and its training logs: single-model
image-level validation accuracies, ensemble leaderboard scores, validation accuracy of
the 14-model ensemble by image-MD5 mode, and the per-product combiners compared on an
Xception model.
"""
from collections import namedtuple

ReferenceModel = namedtuple("ReferenceModel", "key network transfer dataset epochs val_acc")

MODELS = (
    ReferenceModel("M01", "ResNeXt-101", "ImageNet-1k", "C", 23, 0.660329),
    ReferenceModel("M02", "DPN-92", "ImageNet-1k", "C", 13, 0.662091),
    ReferenceModel("M03", "DPN-92", "ImageNet-1k", "C", 13, 0.663739),
    ReferenceModel("M04", "DenseNet-161", "ImageNet-1k", "A", 20, 0.726930),
    ReferenceModel("M05", "DPN-98", "ImageNet-1k", "A", 20, 0.732641),
    ReferenceModel("M06", "DPN-92", "ImageNet-1k", "A", 11, 0.734462),
    ReferenceModel("M07", "ResNeXt-101-64x4d", "ImageNet-1k", "A", 15, 0.735808),
    ReferenceModel("M08", "DPN-131", "ImageNet-1k", "A", 18, 0.736697),
    ReferenceModel("M09", "ResNeXt-101-64x4d", "ImageNet-1k", "B", 15, 0.737427),
    ReferenceModel("M10", "ResNeXt-101", "ImageNet-1k", "A", 19, 0.738542),
    ReferenceModel("M11", "SE-ResNeXt-101-64x4d", "M10", "A", 15, 0.739272),
    ReferenceModel("M12", "DPN-131", "ImageNet-1k", "B", 17, 0.742388),
    ReferenceModel("M13", "SE-ResNeXt-101-64x4d", "M09", "B", 13, 0.743221),
    ReferenceModel("M14", "DPN-107", "ImageNet-1k", "A", 20, 0.743781),
)
MODELS_BY_KEY = {m.key: m for m in MODELS}

# Where the table above disagrees with the reference's own training logs (its "epochs" is
# the checkpoint used, 1-based; the logs' epochs are 0-based).
TABLE_VS_LOGS = {
    "M05": "20 epochs in the table; its log ends at epoch 15, with 0.732641",
    "M12": "0.742388 in the table; its log has 0.742338 at epoch 17",
}

# Kaggle leaderboard scores (private, public) of the reference's submissions.
ENSEMBLES = (
    ("M14 alone", 0.76713, 0.76544),
    ("M11-M14", 0.78693, 0.78490),
    ("all 14 models", 0.78998, 0.78813),
    ("14 models + MD5 post-processing", 0.79046, 0.78861),
)

# Validation accuracy of the 14-model ensemble by image-MD5 mode.
MD5_MODES = {"none": 0.75848, "unique": 0.76172, "majority": 0.75760, "l1": 0.76175, "l2": 0.76157,
             "softmax": 0.75339}

# Per-product combiners on an Xception model (validation accuracy, no TTA).
COMBINERS = {"mean": 0.708, "geometric": 0.712, "rms": 0.707, "median": 0.707, "power0.1": 0.712,
             "max": 0.706, "first": 0.691}
