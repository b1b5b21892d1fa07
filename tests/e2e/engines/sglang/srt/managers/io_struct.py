"""Fake sglang.srt.managers.io_struct: the IPC message classes exchanged by
TokenizerManager, Scheduler and DetokenizerManager over ZeroMQ
(send_pyobj(obj, protocol=pickle.HIGHEST_PROTOCOL) = protocol 5 when
SGLANG_USE_PICKLE_IPC is on).

Source: sgl-project/sglang python/sglang/srt/managers/io_struct.py.
* msgspec era (2026): every message is `class X(BaseReq | BaseBatchReq,
  kw_only=True)` with BaseReq = msgspec.Struct(tag=True, kw_only=True,
  array_like=True) -> pickled as msgspec._utils.rebuild(X, {...}).
* dataclass era (2024-2025): @dataclass classes -> NEWOBJ X + BUILD {...};
  the detokenizer outputs were called BatchTokenIDOut / BatchStrOut in
  0.3/0.4 and BatchTokenIDOutput / BatchStrOutput later; finish reasons were
  schedule_batch.FINISH_* objects (dicts in the msgspec era).
One class per module:qualname serves both eras (msgspec.WIRE_ERA picks the
wire shape); fields are those of the 2026 source, trimmed of nothing that
changes which globals a message imports.
"""

from __future__ import annotations

from array import array
from enum import Enum
from typing import Any, Dict, List, Literal, Optional, Union

import msgspec

from sglang.srt.managers.schedule_batch import Modality, MultimodalProcessorOutput
from sglang.srt.sampling.sampling_params import SamplingParams


class BaseReq(msgspec.Struct, tag=True, kw_only=True, array_like=True):
    rid: Optional[str] = None
    http_worker_ipc: Optional[str] = None


class BaseBatchReq(msgspec.Struct, tag=True, kw_only=True, array_like=True):
    rids: Optional[List[str]] = None
    http_worker_ipcs: Optional[List[Optional[str]]] = None


class SessionParams(msgspec.Struct, kw_only=True, array_like=True):
    id: Optional[str] = None
    rid: Optional[str] = None
    offset: Optional[int] = None
    replace: Optional[bool] = None
    drop_previous_output: Optional[bool] = None


class TokenizedGenerateReqInput(BaseReq, kw_only=True):
    input_text: Optional[str]
    input_ids: Optional[array]
    input_embeds: Optional[List[List[float]]]
    mm_inputs: Optional[MultimodalProcessorOutput]
    token_type_ids: Optional[List[int]]
    sampling_params: SamplingParams
    return_logprob: bool
    logprob_start_len: int
    top_logprobs_num: int
    token_ids_logprob: Optional[List[int]]
    stream: bool
    return_sampling_mask: bool = False
    return_flat_raw_top_logprobs: bool = False
    return_hidden_states: bool = False
    return_routed_experts: bool = False
    routed_experts_start_len: int = 0
    return_indexer_topk: bool = False
    session_id: Optional[str] = None
    session_params: Optional[SessionParams] = None
    lora_id: Optional[str] = None
    custom_logit_processor: Optional[str] = None
    positional_embed_overrides: Any = None
    bootstrap_host: Optional[str] = None
    bootstrap_port: Optional[int] = None
    bootstrap_room: Optional[int] = None
    bootstrap_pair_key: Optional[str] = None
    decode_tp_size: Optional[int] = None
    routed_dp_rank: Optional[int] = None
    disagg_prefill_dp_rank: Optional[int] = None
    kv_router_hint: Optional[dict] = None
    routing_key: Optional[str] = None
    require_reasoning: bool = False
    priority: Optional[int] = None
    extra_key: Optional[str] = None
    no_logs: bool = False
    return_bytes: bool = False
    return_entropy: bool = False
    need_wait_for_mm_inputs: Optional[bool] = None
    num_items_assigned: Optional[Dict[Modality, List[int]]] = None
    encoder_urls: Optional[List[str]] = None
    multi_item_delimiter_indices: Optional[List[int]] = None
    time_stats: Any = None
    cache_salt: Optional[str] = None


class BatchTokenizedGenerateReqInput(BaseBatchReq, kw_only=True):
    batch: List[TokenizedGenerateReqInput]


class TokenizedEmbeddingReqInput(BaseReq, kw_only=True):
    input_text: Optional[str]
    input_ids: Optional[array]
    mm_inputs: Optional[MultimodalProcessorOutput]
    token_type_ids: Optional[List[int]]
    sampling_params: SamplingParams
    lora_id: Optional[str] = None
    positional_embed_overrides: Any = None
    routed_dp_rank: Optional[int] = None
    priority: Optional[int] = None
    dimensions: Optional[int] = None
    return_pooled_hidden_states: bool = False
    multi_item_delimiter_indices: Optional[List[int]] = None
    time_stats: Any = None


class BatchTokenizedEmbeddingReqInput(BaseBatchReq, kw_only=True):
    batch: List[TokenizedEmbeddingReqInput]


class BatchTokenIDOutput(BaseBatchReq, kw_only=True):
    finished_reasons: List[Any]
    decoded_texts: List[str]
    decode_ids: List[array]
    read_offsets: List[int]
    output_ids: Optional[List[array]]
    skip_special_tokens: List[bool]
    spaces_between_special_tokens: List[bool]
    no_stop_trim: List[bool]
    prompt_tokens: List[int]
    reasoning_tokens: List[int]
    completion_tokens: List[int]
    cached_tokens: List[int]
    input_token_logprobs_val: Any
    input_token_logprobs_idx: Any
    output_token_logprobs_val: Any
    output_token_logprobs_idx: Any
    input_top_logprobs_val: Any
    input_top_logprobs_idx: Any
    output_top_logprobs_val: Any
    output_top_logprobs_idx: Any
    input_token_ids_logprobs_val: Any
    input_token_ids_logprobs_idx: Any
    output_token_ids_logprobs_val: Any
    output_token_ids_logprobs_idx: Any
    output_token_entropy_val: Any
    output_token_sampling_mask: Any
    output_token_sampling_logprobs: Any
    output_hidden_states: Any
    routed_experts: Any
    indexer_topk: Any
    placeholder_tokens_idx: Any
    placeholder_tokens_val: Any
    retraction_counts: Optional[List[int]] = None
    beam_search_output: Any = None
    weight_versions: Any = None
    token_steps: Optional[List[List[int]]] = None
    customized_info: Any = None
    cached_tokens_details: Any = None
    dp_ranks: Optional[List[Optional[int]]] = None
    time_stats: Any = None
    image_tokens: Optional[List[int]] = None
    audio_tokens: Optional[List[int]] = None
    video_tokens: Optional[List[int]] = None
    spec_verify_ct: Optional[List[int]] = None
    spec_num_correct_drafts: Optional[List[int]] = None
    input_top_logprobs_val_flat: Any = None
    input_top_logprobs_idx_flat: Any = None
    input_top_logprobs_flat_null_prefix: Any = None


class BatchStrOutput(BaseBatchReq, kw_only=True):
    finished_reasons: List[Any]
    output_strs: List[str]
    output_ids: Optional[List[array]]
    prompt_tokens: List[int]
    completion_tokens: List[int]
    reasoning_tokens: List[int]
    cached_tokens: List[int]
    input_token_logprobs_val: Any
    input_token_logprobs_idx: Any
    output_token_logprobs_val: Any
    output_token_logprobs_idx: Any
    input_top_logprobs_val: Any
    input_top_logprobs_idx: Any
    output_top_logprobs_val: Any
    output_top_logprobs_idx: Any
    input_token_ids_logprobs_val: Any
    input_token_ids_logprobs_idx: Any
    output_token_ids_logprobs_val: Any
    output_token_ids_logprobs_idx: Any
    output_token_entropy_val: Any
    output_token_sampling_mask: Any
    output_token_sampling_logprobs: Any
    output_hidden_states: Any
    routed_experts: Any
    indexer_topk: Any
    placeholder_tokens_idx: Any
    placeholder_tokens_val: Any
    retraction_counts: Optional[List[int]] = None
    dp_ranks: Optional[List[Optional[int]]] = None
    time_stats: Any = None


class BatchEmbeddingOutput(BaseBatchReq, kw_only=True):
    finished_reasons: List[Any]
    embeddings: List[Any]
    prompt_tokens: List[int]
    cached_tokens: List[int]
    placeholder_tokens_idx: Any
    placeholder_tokens_val: Any
    retraction_counts: Optional[List[int]] = None
    time_stats: Any = None
    pooled_hidden_states: Any = None


# Dataclass-era (0.3/0.4) names of the detokenizer messages.
class BatchTokenIDOut(BaseBatchReq, kw_only=True):
    finished_reasons: List[Any]
    decoded_texts: List[str]
    decode_ids: List[int]
    read_offsets: List[int]
    skip_special_tokens: List[bool]
    spaces_between_special_tokens: List[bool]
    meta_info: List[Dict]


class BatchStrOut(BaseBatchReq, kw_only=True):
    output_strs: List[str]
    meta_info: List[Dict]
    finished_reasons: List[Any]


class BatchEmbeddingOut(BaseBatchReq, kw_only=True):
    embeddings: List[List[float]]
    meta_info: List[Dict]
    finished_reasons: List[Any]


class FlushCacheReq(BaseReq, kw_only=True):
    """0.3/0.4 name of FlushCacheReqInput."""


# --- control messages -----------------------------------------------------

class FlushCacheReqInput(BaseReq, kw_only=True):
    timeout_s: Optional[float] = None


class FlushCacheReqOutput(BaseReq, kw_only=True):
    success: bool
    message: str = ""


class ClearHiCacheReqInput(BaseReq, kw_only=True):
    pass


class ClearHiCacheReqOutput(BaseReq, kw_only=True):
    success: bool


class AbortReq(BaseReq, kw_only=True):
    abort_all: bool = False
    finished_reason: Optional[Dict] = None
    abort_message: Optional[str] = None
    weight_versions: Any = None


class PauseGenerationReqInput(BaseReq, kw_only=True):
    mode: Literal["abort", "retract", "in_place"] = "abort"


class ContinueGenerationReqInput(BaseReq, kw_only=True):
    torch_empty_cache: bool = True


class UpdateWeightFromDiskReqInput(BaseReq, kw_only=True):
    model_path: str
    load_format: Optional[str] = None
    abort_all_requests: bool = False
    weight_version: Optional[str] = None
    is_async: bool = False
    torch_empty_cache: bool = False
    keep_pause: bool = False
    recapture_cuda_graph: bool = False
    token_step: int = 0
    flush_cache: bool = True
    manifest: Optional[Dict[str, Any]] = None


class UpdateWeightFromDiskReqOutput(BaseReq, kw_only=True):
    success: bool
    message: str
    num_paused_requests: int = 0


class UpdateWeightsFromDistributedReqInput(BaseReq, kw_only=True):
    names: List[str]
    dtypes: List[str]
    shapes: List[List[int]]
    group_name: str = "weight_update_group"
    flush_cache: bool = True
    abort_all_requests: bool = False
    weight_version: Optional[str] = None
    load_format: Optional[str] = None
    torch_empty_cache: bool = False


class UpdateWeightsFromDistributedReqOutput(BaseReq, kw_only=True):
    success: bool
    message: str


class InitWeightsUpdateGroupReqInput(BaseReq, kw_only=True):
    master_address: str
    master_port: int
    rank_offset: int
    world_size: int
    group_name: str = "weight_update_group"
    backend: str = "nccl"


class InitWeightsUpdateGroupReqOutput(BaseReq, kw_only=True):
    success: bool
    message: str


class UpdateWeightVersionReqInput(BaseReq, kw_only=True):
    new_version: str
    abort_all_requests: bool = True


class GetWeightsByNameReqInput(BaseReq, kw_only=True):
    name: str
    truncate_size: int = 100


class GetWeightsByNameReqOutput(BaseReq, kw_only=True):
    parameter: Optional[List[Union[float, List[float]]]]


class ReleaseMemoryOccupationReqInput(BaseReq, kw_only=True):
    tags: Optional[List[str]] = None


class ReleaseMemoryOccupationReqOutput(BaseReq, kw_only=True):
    pass


class ResumeMemoryOccupationReqInput(BaseReq, kw_only=True):
    tags: Optional[List[str]] = None


class ResumeMemoryOccupationReqOutput(BaseReq, kw_only=True):
    pass


class SlowDownReqInput(BaseReq, kw_only=True):
    forward_sleep_time: Optional[float]


class SlowDownReqOutput(BaseReq, kw_only=True):
    pass


class ActiveRanksOutput(BaseReq, kw_only=True):
    status: List[bool]


class GetInternalStateReq(BaseReq, kw_only=True):
    pass


class GetInternalStateReqOutput(BaseReq, kw_only=True):
    internal_state: Dict[str, Any]


class SetInternalStateReq(BaseReq, kw_only=True):
    server_args: Dict[str, Union[int, float]]


class SetInternalStateReqOutput(BaseReq, kw_only=True):
    updated: bool


class ProfileReqType(Enum):
    START_PROFILE = 1
    STOP_PROFILE = 2


class ProfileReq(BaseReq, kw_only=True):
    req_type: ProfileReqType = ProfileReqType.START_PROFILE
    output_dir: Optional[str] = None
    start_step: Optional[int] = None
    num_steps: Optional[int] = None
    activities: Optional[List[str]] = None
    profile_by_stage: bool = False
    with_stack: Optional[bool] = None
    record_shapes: Optional[bool] = None
    profile_id: Optional[str] = None
    merge_profiles: bool = False
    profile_prefix: Optional[str] = None
    profile_stages: Optional[List[str]] = None
    detailed_annotations: bool = False


class ProfileReqOutput(BaseReq, kw_only=True):
    success: bool
    message: str


class FreezeGCReq(BaseReq, kw_only=True):
    pass


class ConfigureLoggingReq(BaseReq, kw_only=True):
    log_requests: Optional[bool] = None
    log_requests_level: Optional[int] = None
    log_requests_format: Optional[str] = None
    log_level: Optional[str] = None
    dump_requests_folder: Optional[str] = None
    dump_requests_threshold: Optional[int] = None
    crash_dump_folder: Optional[str] = None
    dump_requests_exclude_meta_keys: Optional[List[str]] = None


class OpenSessionReqInput(BaseReq, kw_only=True):
    capacity_of_str_len: int
    session_id: Optional[str] = None
    streaming: Optional[bool] = None
    timeout: Optional[float] = None


class CloseSessionReqInput(BaseReq, kw_only=True):
    session_id: str


class OpenSessionReqOutput(BaseReq, kw_only=True):
    session_id: Optional[str]
    success: bool


class HealthCheckOutput(BaseReq, kw_only=True):
    pass


class ExpertDistributionReqType(Enum):
    START_RECORD = 1
    STOP_RECORD = 2
    DUMP_RECORD = 3


class ExpertDistributionReq(BaseReq, kw_only=True):
    action: ExpertDistributionReqType


class ExpertDistributionReqOutput(BaseReq, kw_only=True):
    pass


class Function(msgspec.Struct, kw_only=True, array_like=True):
    description: Optional[str] = None
    name: Optional[str] = None
    parameters: Optional[Dict[str, Any]] = None


class Tool(msgspec.Struct, kw_only=True, array_like=True):
    function: Function
    type: str = "function"


class ParseFunctionCallReq(BaseReq, kw_only=True):
    text: str
    tools: List[Tool] = msgspec.field(default_factory=list)
    tool_call_parser: Optional[str] = None


class SeparateReasoningReqInput(BaseReq, kw_only=True):
    text: str
    reasoning_parser: str
    return_blocks: bool = False


class RpcReqInput(BaseReq, kw_only=True):
    method: str
    parameters: Optional[Dict[str, Union[bool, int, float, str, None]]] = None


class RpcReqOutput(BaseReq, kw_only=True):
    success: bool
    message: str


class LoadLoRAAdapterReqInput(BaseReq, kw_only=True):
    lora_name: str
    lora_path: str
    pinned: bool = False
    lora_id: Optional[str] = None


class UnloadLoRAAdapterReqInput(BaseReq, kw_only=True):
    lora_name: str
    lora_id: Optional[str] = None


class LoRAUpdateOutput(BaseReq, kw_only=True):
    success: bool
    error_message: Optional[str] = None
    loaded_adapters: Optional[Dict[str, str]] = None


class BlockReqType(Enum):
    BLOCK = 1
    UNBLOCK = 2


class BlockReqInput(BaseReq, kw_only=True):
    req_type: BlockReqType
