"""Fake vllm.sampling_params: SamplingParams, RequestOutputKind,
StructuredOutputsParams (GuidedDecodingParams before v0.10.2).

Source: vllm-project/vllm vllm/sampling_params.py (v0.10-0.11). SamplingParams
is `msgspec.Struct, omit_defaults=True, dict=True` without kw_only, so
msgspec pickles it as REDUCE(SamplingParams, (field values...)) - the class
itself is the callable. output_kind is an Enum member (builtins.getattr on
CPython 3.11.0-3.11.6).
"""

from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

import msgspec


class RequestOutputKind(Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


@dataclass
class GuidedDecodingParams:
    """v0.6-v0.10 name of StructuredOutputsParams (SamplingParams.guided_decoding)."""
    json: Optional[Any] = None
    regex: Optional[str] = None
    choice: Optional[list] = None
    grammar: Optional[str] = None
    json_object: Optional[bool] = None
    backend: Optional[str] = None
    whitespace_pattern: Optional[str] = None


@dataclass
class StructuredOutputsParams:
    json: Optional[Any] = None
    regex: Optional[str] = None
    choice: Optional[list] = None
    grammar: Optional[str] = None
    json_object: Optional[bool] = None
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: Optional[str] = None
    structural_tag: Optional[str] = None


class SamplingParams(msgspec.Struct, omit_defaults=True, dict=True):
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: Optional[int] = None
    stop: Any = None
    stop_token_ids: Optional[list] = None
    ignore_eos: bool = False
    max_tokens: Optional[int] = 16
    min_tokens: int = 0
    logprobs: Optional[int] = None
    prompt_logprobs: Optional[int] = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
    structured_outputs: Optional[StructuredOutputsParams] = None
    logit_bias: Optional[dict] = None
    allowed_token_ids: Optional[list] = None
    extra_args: Optional[dict] = None
    bad_words: Optional[list] = None
    _bad_words_token_ids: Optional[list] = None
    _all_stop_token_ids: set = msgspec.field(default_factory=set)
    _eos_token_id: Optional[int] = None
