"""Invoke latency of each export's shipped program (1 thread), and its ratio to the dense
parent's conversion timed side by side (litert.paired_latency) when convert kept one."""
from __future__ import annotations

import numpy as np

from pipeline import litert
from pipeline.evaluators import Context, Evaluator
from pipeline.metrics import Metric


class Latency(Evaluator):
    name = "latency"
    settings = ("latency_runs",)

    def run(self, context: Context) -> list[Metric]:
        runs, program = context.config.eval.latency_runs, context.task.shipped_program
        timed = context.task.timing_ids(context.files)
        records, details = [], {}
        for export in context.conversions:
            path = context.tflite(export, program)
            interpreter = litert.open_interpreter(path)
            litert.set_timing_inputs(interpreter, np.random.default_rng(0), timed)
            latency = {**litert.time_calls(interpreter.invoke, runs),
                       "per": context.task.latency_per}
            records += [Metric("latency_median_ms", export, "", latency["median_ms"], False),
                        Metric("latency_p90_ms", export, "", latency["p90_ms"], False)]
            details[export] = {"latency": latency}
            reference = context.dense_tflite(export, program)
            if reference is not None:
                paired = litert.paired_latency(path, reference, runs, timed)
                records.append(Metric("latency_vs_dense", export, "", paired["ratio"], False))
                details[export]["latency_vs_dense"] = paired
        context.details[self.name] = details
        return records
