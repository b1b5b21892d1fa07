"""Fake sglang.srt.observability.trace: TraceNullContext, the trace context
of a request when tracing is off (always pickled inside the time stats).

Source: sgl-project/sglang python/sglang/srt/observability/trace.py. With
tracing on, TraceReqContext travels instead (not modelled: its state holds
OpenTelemetry contexts; learn it on a tracing deployment).
"""

from dataclasses import dataclass


@dataclass
class TraceNullContext:
    tracing_enable: bool = False

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self
