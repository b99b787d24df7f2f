"""Export formats: how the converter is set up for each .tflite kind the pipeline writes.

Adding a format is one entry in REGISTRY (its converter settings, whether its weights are
integers, its line style in the bench plots) plus its tests; `--exports` offers every
registered name.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Export:
    name: str
    optimizations: tuple[str, ...]  # tf.lite.Optimize member names
    integer_weights: bool           # the converter quantizes weight tensors
    plot_style: str                 # matplotlib format string in the bench plots

    def configure(self, converter) -> None:
        import tensorflow as tf
        converter.optimizations = [getattr(tf.lite.Optimize, name)
                                   for name in self.optimizations]


REGISTRY = {
    # float32 weights and activations: the parity reference.
    "float": Export("float", (), False, "-o"),
    # Dynamic-range quantization: int8 weights, float activations. The fast CPU path for
    # the fused LSTM (full-integer int8 runs slower on x86; 16x8 is refused for it).
    "int8": Export("int8", ("DEFAULT",), True, "--s"),
}
