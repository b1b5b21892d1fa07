"""Fake sarathi.core.datatypes.sampling_params (Source: microsoft/sarathi-serve sarathi/core/datatypes/
sampling_params.py at 3a210e7). SamplingParams is a plain class whose
cached_property sampling_type (an IntEnum) lands in __dict__ once read."""

from enum import IntEnum
from functools import cached_property

_SAMPLING_EPS = 1e-5


class SamplingType(IntEnum):
    GREEDY = 0
    RANDOM = 1


class SamplingParams:
    def __init__(self, temperature=1.0, top_p=1.0, top_k=-1, stop=None,
                 ignore_eos=False, max_tokens=2048):
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.stop = [] if stop is None else ([stop] if isinstance(stop, str) else list(stop))
        self.ignore_eos = ignore_eos
        self.max_tokens = max_tokens

    @cached_property
    def sampling_type(self):
        return SamplingType.GREEDY if self.temperature < _SAMPLING_EPS else SamplingType.RANDOM
