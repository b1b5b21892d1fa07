"""Fake sglang.srt.observability.req_time_stats: the per-request time stats
that ride in TokenizedGenerateReqInput.time_stats (APIServerReqTimeStats
from the tokenizer, DPControllerReqTimeStats through the DP controller) and
in the scheduler outputs' time_stats (a list of SchedulerReqTimeStats).

Source: sgl-project/sglang python/sglang/srt/observability/req_time_stats.py
(2026). In pickle mode (SGLANG_USE_PICKLE_IPC) they are pickled inline:
NEWOBJ of the class + BUILD of what __getstate__ returns - for the request
side {disagg_mode (Enum), enable_metrics, trace_ctx (TraceNullContext),
diff_realtime_monotonic}; for the scheduler side {} unless metrics are on.
"""

import time
from dataclasses import dataclass, field

from sglang.srt.disaggregation.utils import DisaggregationMode
from sglang.srt.observability.trace import TraceNullContext

global_diff_realtime_monotonic = time.time() - time.perf_counter()


@dataclass(repr=False)  # repr=False: an unpickled one may lack fields (empty state); wire unchanged
class ReqTimeStatsBase:
    enable_metrics: bool = False
    metrics_collector: object = None
    trace_ctx: object = field(default_factory=TraceNullContext)
    disagg_mode: DisaggregationMode = DisaggregationMode.NULL
    diff_realtime_monotonic: float = 0.0

    def __getstate__(self):
        return {
            "disagg_mode": self.disagg_mode,
            "enable_metrics": False,
            "trace_ctx": self.trace_ctx,
            "diff_realtime_monotonic": global_diff_realtime_monotonic,
        }

    def __setstate__(self, state):
        self.__dict__.update(state)


@dataclass(repr=False)  # repr=False: an unpickled one may lack fields (empty state); wire unchanged
class APIServerReqTimeStats(ReqTimeStatsBase):
    created_time: float = 0.0
    finished_time: float = 0.0
    first_token_time: float = 0.0
    last_time: float = 0.0
    tokenize_finish_time: float = 0.0
    api_server_dispatch_time: float = 0.0
    api_server_dispatch_finish_time: float = 0.0
    response_sent_to_client_time: float = 0.0


@dataclass(repr=False)  # repr=False: an unpickled one may lack fields (empty state); wire unchanged
class DPControllerReqTimeStats(ReqTimeStatsBase):
    created_time: float = 0.0
    api_server_dispatch_time: float = 0.0
    dpc_dispatch_time: float = 0.0
    dpc_dispatch_finish_time: float = 0.0


@dataclass(repr=False)  # repr=False: an unpickled one may lack fields (empty state); wire unchanged
class SchedulerReqTimeStats(ReqTimeStatsBase):
    wait_queue_entry_time: float = 0.0
    forward_entry_time: float = 0.0
    prefill_finished_time: float = 0.0
    completion_time: float = 0.0

    def __getstate__(self):
        if not self.enable_metrics:
            return {}
        return {
            "wait_queue_entry_time": self.wait_queue_entry_time,
            "forward_entry_time": self.forward_entry_time,
            "prefill_finished_time": self.prefill_finished_time,
            "diff_realtime_monotonic": global_diff_realtime_monotonic,
        }
