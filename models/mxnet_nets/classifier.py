"""The one network shape every Gluon model shares: ``features`` -> optional dropout -> ``output``."""
from mxnet.gluon import nn


class Classifier(nn.HybridBlock):
    """A backbone ending in a flat feature vector, then a fresh fully-connected classifier.

    ``features`` is built by ``build_features()`` inside this block's name scope, so all
    parameter names start with this block's prefix (the model name plus ``_``); it must
    output ``feature_channels`` values per image. ``output`` is ``nn.Dense(classes)``
    named ``classifier_prefix`` (``fc6_`` for DPN, as
    in the published checkpoints). Fine-tuning replaces the classifier simply by building
    the same model with another ``classes``.
    """

    def __init__(self, build_features, feature_channels, classes, dropout=0.0, classifier_prefix="output_",
                 **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError("dropout must be in [0, 1), got %r" % dropout)
        with self.name_scope():
            self.features = build_features()
            self.dropout = nn.Dropout(dropout) if dropout > 0 else None
            self.output = nn.Dense(classes, in_units=feature_channels, prefix=classifier_prefix)

    def hybrid_forward(self, F, x):
        x = self.features(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.output(x)
