"""Sizes of every .tflite (raw and gzip'd, against the dense float model) and the sparsity
read back from it; details keep each file's sha256, which the bundle stage checks."""
from __future__ import annotations

from pipeline import artifacts, litert, methods
from pipeline.evaluators import Context, Evaluator
from pipeline.metrics import Metric


def pruned_fraction(per_weight: dict, config) -> float | None:
    """Element-weighted zero fraction over the weights of the layers that were pruned."""
    kinds = methods.for_config(config).pruned_kinds(config)
    return litert.zero_fraction(per_weight, kinds=kinds) if kinds else None


class Size(Evaluator):
    name = "size"

    def run(self, context: Context) -> list[Metric]:
        records, files = [], {}
        for export, info in context.conversions.items():
            pruned = pruned_fraction(info["sparsity"], context.config)
            records += [Metric("bytes", export, "", info["bytes"], False),
                        Metric("gzip_bytes", export, "", info["gzip_bytes"], False),
                        Metric("gzip_compression_vs_dense_float", export, "",
                               info["gzip_compression_vs_dense_float"], True),
                        Metric("pruned_sparsity", export, "", pruned, None)]
            files[export] = {
                "file": info["file"], "sha256": self.sha256(context, info["file"]),
                "dense_reference": info["dense_reference"], "sparsity": info["sparsity"],
                "programs": {name: {**{k: p[k] for k in ("file", "bytes", "gzip_bytes")},
                                    "sha256": self.sha256(context, p["file"])}
                             for name, p in info["programs"].items()}}
        context.details[self.name] = {
            "files": files, "keras_sparsity": artifacts.read_json(context.files.keras_sparsity)}
        return records

    @staticmethod
    def sha256(context: Context, file: str) -> str:
        return artifacts.sha256_file(context.files.converted(file))
