"""Fake sglang.srt.sampling.sampling_params.SamplingParams.

Source: sgl-project/sglang python/sglang/srt/sampling/sampling_params.py.
2026 releases: msgspec.Struct(kw_only=True, omit_defaults=True) -> pickles as
msgspec._utils.rebuild(SamplingParams, {...}); earlier releases: a plain
class (NEWOBJ + BUILD). Field names as in the 2026 source.
"""

from typing import Dict, List, Optional, Set, Union

import msgspec

TOP_K_ALL = 1 << 30


class SamplingParams(msgspec.Struct, kw_only=True, omit_defaults=True):
    max_new_tokens: Optional[int] = 128
    stop: Optional[Union[str, List[str]]] = None
    stop_token_ids: Optional[Set[int]] = None
    stop_regex: Optional[Union[str, List[str]]] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = TOP_K_ALL
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    min_new_tokens: int = 0
    n: int = 1
    json_schema: Optional[str] = None
    regex: Optional[str] = None
    ebnf: Optional[str] = None
    structural_tag: Optional[str] = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    custom_params: Optional[Dict] = None
    stream_interval: Optional[int] = None
    logit_bias: Optional[Dict[str, float]] = None
    sampling_seed: Optional[int] = None
    stop_strs: Optional[Union[str, List[str]]] = None
    stop_regex_strs: Optional[Union[str, List[str]]] = None
    stop_str_max_len: int = 0
    stop_regex_max_len: int = 0
    is_normalized: bool = False
