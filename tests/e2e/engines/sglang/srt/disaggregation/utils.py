"""Fake sglang.srt.disaggregation.utils: DisaggregationMode, which the
request time stats carry in their pickled state.

Source: sgl-project/sglang python/sglang/srt/disaggregation/utils.py.
"""

from enum import Enum


class DisaggregationMode(Enum):
    NULL = "null"
    PREFILL = "prefill"
    DECODE = "decode"
    ENCODE = "encode"
