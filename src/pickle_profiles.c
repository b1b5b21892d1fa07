/* pickle_profiles: the "@name" allowlists shipped with zmtpfw for the route
 * key pickle_globals (issue 11). Pure data, no I/O, no allocation.
 *
 * How the lists were derived (tests/e2e/test_profiles_data.py re-checks it):
 *   - @numpy, @torch: real objects pickled here with protocols 3, 4 and 5 on
 *     Debian 12 (CPython 3.11.2, numpy 1.24.2, torch 1.13.1), every global
 *     CPython's find_class was asked for recorded by an Unpickler subclass,
 *     including the legacy torch.save stream that torch.storage.
 *     _load_from_bytes unpickles. Spellings of newer releases (numpy >= 2:
 *     numpy._core.*; torch 2.x: _rebuild_tensor_v3, UntypedStorage, the
 *     float8/uint dtypes) come from their public sources and say so.
 *   - @sglang, @sarathi-serve, @vllm: the classes that the engines' public
 *     sources put on their ZeroMQ sockets, pickled by fake modules of the
 *     same module:qualname (tests/e2e/engines) in 1,000 real-shaped messages
 *     per generator (tests/e2e/engine_msgs.py).
 * Protocol 0-2 spellings (copy_reg, __builtin__, _codecs:encode) are never
 * listed: no engine sends them, and the config checker refuses the aliases.
 *
 * builtins:getattr appears in the engine profiles (@sglang, @sarathi-serve,
 * @vllm) only, for the Enum shape of CPython 3.11.0-3.11.6 (see the
 * entries); the scanner accepts it in no other shape. */
#include "zmtpfw/pickle_profiles.h"

#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* --- @numpy ------------------------------------------------------------- */

static const struct pprof_entry numpy_v[] = {
	{ "numpy:dtype",
	  "numpy dtype.__reduce__: every ndarray and numpy scalar (numpy 1.x and 2.x; measured with numpy 1.24.2)" },
	{ "numpy.core.numeric:_frombuffer",
	  "numpy ndarray.__reduce_ex__(protocol 5) of a contiguous non-object array (numpy 1.16-1.26; measured with numpy 1.24.2)" },
	{ "numpy._core.numeric:_frombuffer",
	  "numpy >= 2: ndarray.__reduce_ex__(protocol 5), numpy/_core/src/multiarray/methods.c array_reduce_ex_picklebuffer" },
	{ "numpy.core.multiarray:_reconstruct",
	  "numpy ndarray.__reduce__: protocol <= 4, or protocol 5 of a non-contiguous array (numpy 1.x; measured with numpy 1.24.2)" },
	{ "numpy._core.multiarray:_reconstruct",
	  "numpy >= 2: ndarray.__reduce__ (protocol <= 4 or non-contiguous)" },
	{ "numpy:ndarray",
	  "numpy ndarray.__reduce__: the subtype argument of _reconstruct (numpy 1.x and 2.x; measured with numpy 1.24.2)" },
	{ "numpy.core.multiarray:scalar",
	  "numpy generic.__reduce__: numpy scalars such as np.float32(1.5) (numpy 1.x; measured with numpy 1.24.2)" },
	{ "numpy._core.multiarray:scalar",
	  "numpy >= 2: generic.__reduce__ of numpy scalars" },
};

/* --- @torch ------------------------------------------------------------- */

#define TORCH_STORAGE(cls, dt)                                                            \
	{ "torch:" cls,                                                                       \
	  "torch legacy torch.save persistent id of a " dt " tensor's TypedStorage, inside "  \
	  "_load_from_bytes (torch/serialization.py _legacy_save; measured with torch 1.13.1, " \
	  "same name in torch 2.x via storage._dtype_to_storage_type_map)" }
#define TORCH_DTYPE(name, why) { "torch:" name, "torch.dtype.__reduce__ (pickled by name in module torch): " why }

static const struct pprof_entry torch_v[] = {
	{ "torch._utils:_rebuild_tensor_v2",
	  "torch/_tensor.py Tensor._reduce_ex_internal of a dense CPU tensor (torch 1.x-2.x; measured with torch 1.13.1)" },
	{ "torch._utils:_rebuild_tensor_v3",
	  "torch >= 2 (added with the float8 / uint16-64 dtypes): Tensor._reduce_ex_internal for dtypes in torch.storage._new_dtypes(), explicit dtype argument, UntypedStorage" },
	{ "torch.storage:_load_from_bytes",
	  "torch/storage.py TypedStorage.__reduce__ / UntypedStorage.__reduce__: a full torch.load of its bytes (legacy torch.save stream); "
	  "allowed only because the scanner checks that inner stream recursively against the same list" },
	{ "collections:OrderedDict",
	  "torch Tensor._reduce_ex_internal: the backward_hooks argument of _rebuild_tensor_v2 (an empty OrderedDict; measured with torch 1.13.1)" },
	TORCH_STORAGE("FloatStorage", "float32"),
	TORCH_STORAGE("DoubleStorage", "float64"),
	TORCH_STORAGE("HalfStorage", "float16"),
	TORCH_STORAGE("BFloat16Storage", "bfloat16"),
	TORCH_STORAGE("LongStorage", "int64"),
	TORCH_STORAGE("IntStorage", "int32"),
	TORCH_STORAGE("ShortStorage", "int16"),
	TORCH_STORAGE("CharStorage", "int8"),
	TORCH_STORAGE("ByteStorage", "uint8"),
	TORCH_STORAGE("BoolStorage", "bool"),
	TORCH_STORAGE("ComplexFloatStorage", "complex64"),
	TORCH_STORAGE("ComplexDoubleStorage", "complex128"),
	{ "torch:UntypedStorage",
	  "torch >= 2.0 legacy torch.save persistent id of an UntypedStorage (serialization.py normalize_storage_type), inside "
	  "_load_from_bytes: tensors rebuilt with _rebuild_tensor_v3 and pickled storages" },
	{ "torch:Size", "torch.Size.__reduce__ (measured with torch 1.13.1)" },
	{ "torch:device", "torch.device.__reduce__ (measured with torch 1.13.1)" },
	TORCH_DTYPE("float32", "measured with torch 1.13.1"),
	TORCH_DTYPE("float16", "measured with torch 1.13.1"),
	TORCH_DTYPE("bfloat16", "measured with torch 1.13.1"),
	TORCH_DTYPE("float64", "measured with torch 1.13.1"),
	TORCH_DTYPE("int8", "measured with torch 1.13.1"),
	TORCH_DTYPE("uint8", "measured with torch 1.13.1"),
	TORCH_DTYPE("int16", "measured with torch 1.13.1"),
	TORCH_DTYPE("int32", "measured with torch 1.13.1"),
	TORCH_DTYPE("int64", "measured with torch 1.13.1"),
	TORCH_DTYPE("bool", "measured with torch 1.13.1"),
	TORCH_DTYPE("complex64", "measured with torch 1.13.1"),
	TORCH_DTYPE("complex128", "measured with torch 1.13.1"),
	TORCH_DTYPE("float8_e4m3fn", "torch >= 2.1 (vLLM FP8 KV-cache specs carry it)"),
	TORCH_DTYPE("float8_e5m2", "torch >= 2.1"),
	TORCH_DTYPE("float8_e4m3fnuz", "torch >= 2.2"),
	TORCH_DTYPE("float8_e5m2fnuz", "torch >= 2.2"),
	TORCH_DTYPE("uint16", "torch >= 2.3"),
	TORCH_DTYPE("uint32", "torch >= 2.3"),
	TORCH_DTYPE("uint64", "torch >= 2.3"),
};

/* --- @sglang ------------------------------------------------------------ */

#define SG_IO "python/sglang/srt/managers/io_struct.py "
#define SG_MSGSPEC "(msgspec Struct, kw_only: pickled as msgspec._utils.rebuild(cls, dict); 2026 releases)"
#define SG_BOTH "(msgspec era 2026: rebuild(cls, dict); dataclass era 2024-2025: NEWOBJ + BUILD)"
#define SG_MSG(cls, what, era) { "sglang.srt.managers.io_struct:" cls, SG_IO cls ": " what " " era }
#define SG_ENUM(cls, what) { "sglang.srt.managers.io_struct:" cls, SG_IO cls " (Enum): " what }
#define SG_SB "python/sglang/srt/managers/schedule_batch.py "

static const struct pprof_entry sglang_v[] = {
	{ "@torch", "multimodal features, mrope positions, routed experts and pooled hidden states are torch tensors (schedule_batch.py MultimodalDataItem.feature, io_struct.py BatchTokenIDOutput.routed_experts, BatchEmbeddingOutput.pooled_hidden_states)" },
	{ "@numpy", "multimodal features may be numpy arrays (MultimodalDataItem.feature), and BatchTokenIDOutput.input_top_logprobs_*_flat are np.ndarray" },
	{ "msgspec._utils:rebuild",
	  "msgspec/_utils.py rebuild(cls, kwargs) = cls(**kwargs): msgspec's Struct.__reduce__ for structs with keyword-only fields; "
	  "every SGLang IPC message since the msgspec migration (BaseReq/BaseBatchReq are kw_only)" },
	{ "array:_array_reconstructor",
	  "CPython Modules/arraymodule.c array.__reduce_ex__ (protocol >= 3): TokenizedGenerateReqInput.input_ids and BatchTokenIDOutput.decode_ids/output_ids are array.array (msgspec era)" },
	{ "array:array", "CPython array.__reduce_ex__: the type argument of _array_reconstructor" },
	/* CPython 3.11.0-3.11.6 pickle an Enum member as getattr(EnumClass,
	 * "NAME") (3.11.7 reverted to REDUCE of the class with the value). The
	 * scanner accepts getattr only in that shape: REDUCE of getattr on a
	 * listed class and a constant identifier not starting with '_'. */
	{ "builtins:getattr",
	  "CPython 3.11.0-3.11.6 enum.Enum.__reduce_ex__ (Lib/enum.py): ProfileReqType, ExpertDistributionReqType, BlockReqType, "
	  "schedule_batch Modality / MultimodalInputFormat, disaggregation DisaggregationMode members; Enum shape only" },
	SG_MSG("TokenizedGenerateReqInput", "tokenizer -> scheduler generate request", SG_BOTH),
	SG_MSG("BatchTokenizedGenerateReqInput", "batched generate requests", SG_MSGSPEC),
	SG_MSG("TokenizedEmbeddingReqInput", "tokenizer -> scheduler embedding request", SG_BOTH),
	SG_MSG("BatchTokenizedEmbeddingReqInput", "batched embedding requests", SG_MSGSPEC),
	SG_MSG("SessionParams", "TokenizedGenerateReqInput.session_params", SG_MSGSPEC),
	SG_MSG("BatchTokenIDOutput", "scheduler -> detokenizer", "(msgspec era 2026; dataclass in 0.4.x-2025)"),
	SG_MSG("BatchStrOutput", "detokenizer -> tokenizer", "(msgspec era 2026; dataclass in 0.4.x-2025)"),
	SG_MSG("BatchEmbeddingOutput", "scheduler -> tokenizer embeddings", SG_BOTH),
	SG_MSG("BatchTokenIDOut", "scheduler -> detokenizer, name used by 0.3-0.4 releases", "(dataclass: NEWOBJ + BUILD)"),
	SG_MSG("BatchStrOut", "detokenizer -> tokenizer, name used by 0.3-0.4 releases", "(dataclass: NEWOBJ + BUILD)"),
	SG_MSG("BatchEmbeddingOut", "scheduler -> tokenizer embeddings, name used by 0.3-0.4 releases", "(dataclass: NEWOBJ + BUILD)"),
	SG_MSG("FlushCacheReq", "control, name used by 0.3-0.4 releases", "(dataclass: NEWOBJ + BUILD)"),
	SG_MSG("AbortReq", "abort a request or all", SG_BOTH),
	SG_MSG("FlushCacheReqInput", "control", SG_BOTH),
	SG_MSG("FlushCacheReqOutput", "control reply", SG_BOTH),
	SG_MSG("ClearHiCacheReqInput", "control", SG_MSGSPEC),
	SG_MSG("ClearHiCacheReqOutput", "control reply", SG_MSGSPEC),
	SG_MSG("PauseGenerationReqInput", "control", SG_MSGSPEC),
	SG_MSG("ContinueGenerationReqInput", "control", SG_MSGSPEC),
	SG_MSG("UpdateWeightFromDiskReqInput", "weight update", SG_BOTH),
	SG_MSG("UpdateWeightFromDiskReqOutput", "weight update reply", SG_BOTH),
	SG_MSG("UpdateWeightsFromDistributedReqInput", "weight update", SG_BOTH),
	SG_MSG("UpdateWeightsFromDistributedReqOutput", "weight update reply", SG_BOTH),
	SG_MSG("InitWeightsUpdateGroupReqInput", "weight update group", SG_BOTH),
	SG_MSG("InitWeightsUpdateGroupReqOutput", "weight update group reply", SG_BOTH),
	SG_MSG("UpdateWeightVersionReqInput", "weight version", SG_MSGSPEC),
	SG_MSG("GetWeightsByNameReqInput", "weights query", SG_BOTH),
	SG_MSG("GetWeightsByNameReqOutput", "weights query reply", SG_BOTH),
	SG_MSG("ReleaseMemoryOccupationReqInput", "control", SG_BOTH),
	SG_MSG("ReleaseMemoryOccupationReqOutput", "control reply", SG_BOTH),
	SG_MSG("ResumeMemoryOccupationReqInput", "control", SG_BOTH),
	SG_MSG("ResumeMemoryOccupationReqOutput", "control reply", SG_BOTH),
	SG_MSG("SlowDownReqInput", "control", SG_MSGSPEC),
	SG_MSG("SlowDownReqOutput", "control reply", SG_MSGSPEC),
	SG_MSG("ActiveRanksOutput", "DP attention rank status", SG_MSGSPEC),
	SG_MSG("GetInternalStateReq", "control", SG_BOTH),
	SG_MSG("GetInternalStateReqOutput", "control reply", SG_BOTH),
	SG_MSG("SetInternalStateReq", "control", SG_BOTH),
	SG_MSG("SetInternalStateReqOutput", "control reply", SG_BOTH),
	SG_MSG("ProfileReq", "profiler control", SG_BOTH),
	SG_MSG("ProfileReqOutput", "profiler control reply", SG_BOTH),
	SG_ENUM("ProfileReqType", "ProfileReq.req_type (builtins.getattr on CPython 3.11.0-3.11.6, REDUCE of the class with the value elsewhere)"),
	SG_MSG("FreezeGCReq", "control", SG_MSGSPEC),
	SG_MSG("ConfigureLoggingReq", "control", SG_BOTH),
	SG_MSG("OpenSessionReqInput", "session control", SG_BOTH),
	SG_MSG("OpenSessionReqOutput", "session control reply", SG_BOTH),
	SG_MSG("CloseSessionReqInput", "session control", SG_BOTH),
	SG_MSG("HealthCheckOutput", "health check", SG_BOTH),
	SG_MSG("ExpertDistributionReq", "expert distribution recorder control", SG_BOTH),
	SG_MSG("ExpertDistributionReqOutput", "expert distribution reply", SG_BOTH),
	SG_ENUM("ExpertDistributionReqType", "ExpertDistributionReq.action"),
	SG_MSG("Function", "tool definition inside ParseFunctionCallReq", SG_MSGSPEC),
	SG_MSG("Tool", "tool definition inside ParseFunctionCallReq", SG_MSGSPEC),
	SG_MSG("ParseFunctionCallReq", "function-call parsing", SG_BOTH),
	SG_MSG("SeparateReasoningReqInput", "reasoning parsing", SG_BOTH),
	SG_MSG("RpcReqInput", "engine -> scheduler RPC (method name + flat parameters)", SG_BOTH),
	SG_MSG("RpcReqOutput", "RPC reply", SG_BOTH),
	SG_MSG("LoadLoRAAdapterReqInput", "LoRA control", SG_BOTH),
	SG_MSG("UnloadLoRAAdapterReqInput", "LoRA control", SG_BOTH),
	SG_MSG("LoRAUpdateOutput", "LoRA control reply", SG_MSGSPEC),
	SG_MSG("BlockReqInput", "block / unblock the scheduler", SG_MSGSPEC),
	SG_ENUM("BlockReqType", "BlockReqInput.req_type"),
	{ "sglang.srt.sampling.sampling_params:SamplingParams",
	  "python/sglang/srt/sampling/sampling_params.py SamplingParams, inside Tokenized*ReqInput "
	  "(msgspec Struct kw_only in 2026: rebuild(cls, dict); plain class before: NEWOBJ + BUILD)" },
	{ "sglang.srt.managers.schedule_batch:Modality", SG_SB "Modality (Enum): MultimodalDataItem.modality, keys of TokenizedGenerateReqInput.num_items_assigned" },
	{ "sglang.srt.managers.schedule_batch:MultimodalInputFormat", SG_SB "MultimodalInputFormat (Enum): MultimodalDataItem.format (2025-2026)" },
	{ "sglang.srt.managers.schedule_batch:MultimodalDataItem", SG_SB "MultimodalDataItem (dataclass): items of mm_inputs" },
	{ "sglang.srt.managers.schedule_batch:MultimodalInputs", SG_SB "MultimodalInputs (dataclass): TokenizedGenerateReqInput.mm_inputs in 2025 releases" },
	{ "sglang.srt.managers.schedule_batch:MultimodalProcessorOutput", SG_SB "MultimodalProcessorOutput: TokenizedGenerateReqInput.mm_inputs in 2026 releases (msgspec Struct kw_only, earlier a dataclass)" },
	{ "sglang.srt.observability.req_time_stats:APIServerReqTimeStats",
	  "python/sglang/srt/observability/req_time_stats.py APIServerReqTimeStats (dataclass, __getstate__/__setstate__): "
	  "TokenizedGenerateReqInput/TokenizedEmbeddingReqInput.time_stats, always attached by the tokenizer (2026; pickled inline in pickle mode)" },
	{ "sglang.srt.observability.req_time_stats:DPControllerReqTimeStats",
	  "python/sglang/srt/observability/req_time_stats.py DPControllerReqTimeStats: time_stats of requests forwarded by the DP controller (2026)" },
	{ "sglang.srt.observability.req_time_stats:SchedulerReqTimeStats",
	  "python/sglang/srt/observability/req_time_stats.py SchedulerReqTimeStats: BatchTokenIDOutput/BatchStrOutput.time_stats list (2026; empty state unless metrics on)" },
	{ "sglang.srt.disaggregation.utils:DisaggregationMode",
	  "python/sglang/srt/disaggregation/utils.py DisaggregationMode (Enum): disagg_mode in the time stats' pickled state (2026)" },
	{ "sglang.srt.observability.trace:TraceNullContext",
	  "python/sglang/srt/observability/trace.py TraceNullContext (dataclass): trace_ctx in the time stats' pickled state when tracing is off "
	  "(with tracing on, TraceReqContext travels instead: not listed, learn it)" },
	{ "sglang.srt.managers.schedule_batch:FINISH_MATCHED_TOKEN", SG_SB "BaseFinishReason subclass: BatchTokenIDOut(put).finished_reasons in dataclass-era releases" },
	{ "sglang.srt.managers.schedule_batch:FINISH_MATCHED_STR", SG_SB "BaseFinishReason subclass (dataclass era)" },
	{ "sglang.srt.managers.schedule_batch:FINISH_LENGTH", SG_SB "BaseFinishReason subclass (dataclass era)" },
	{ "sglang.srt.managers.schedule_batch:FINISH_ABORT", SG_SB "BaseFinishReason subclass (dataclass era)" },
};

/* --- @sarathi-serve ----------------------------------------------------- */

#define SA(mod, cls, what)                                                               \
	{ "sarathi.core.datatypes." mod ":" cls,                                             \
	  "sarathi/core/datatypes/" mod ".py " cls ": " what " (send_pyobj protocol 4; pickle era up to 3a210e7, Oct 2025; " \
	  "ZMQ messages moved to protobuf in Jan 2026)" }

static const struct pprof_entry sarathi_v[] = {
	/* CPython 3.11.0-3.11.6 Enum shape, as in @sglang. */
	{ "builtins:getattr",
	  "CPython 3.11.0-3.11.6 enum.Enum.__reduce_ex__: SequenceState._status (SequenceStatus) and SamplingParams.sampling_type "
	  "(SamplingType IntEnum, cached_property in __dict__); Enum shape only" },
	SA("step_inputs", "StepInputs", "engine -> worker every step (dataclass)"),
	SA("scheduler_output", "SchedulerOutputs", "StepInputs.scheduler_outputs and pending_step_outputs"),
	SA("sequence", "SequenceScheduleMetadata", "SchedulerOutputs.scheduled_seq_metadata_list"),
	SA("sequence", "Sequence", "StepInputs.new_seqs"),
	SA("sequence", "SamplerOutput", "worker -> engine SamplerOutputs (list), and StepInputs.pending_step_outputs"),
	SA("sequence_state", "SequenceState", "Sequence.state"),
	SA("sequence_status", "SequenceStatus", "SequenceState._status (Enum)"),
	SA("sampling_params", "SamplingParams", "Sequence.sampling_params"),
	SA("sampling_params", "SamplingType", "SamplingParams.sampling_type once the cached_property was read (IntEnum)"),
	SA("block", "LogicalTokenBlock", "Sequence.logical_token_blocks"),
};

/* --- @vllm -------------------------------------------------------------- */

#define VL_OUT "vllm/v1/core/sched/output.py "
#define VL_KV "vllm/v1/kv_cache_interface.py "

static const struct pprof_entry vllm_v[] = {
	{ "@torch", "NewRequestData.prompt_embeds is a torch.Tensor; FullAttentionSpec.dtype a torch.dtype" },
	{ "@numpy", "GrammarOutput.grammar_bitmask (sample_tokens) is an int32 np.ndarray, out of band when >= 1 MiB" },
	/* CPython 3.11.0-3.11.6 pickle an Enum member as getattr(EnumClass,
	 * "NAME"); the scanner accepts getattr in that shape only. */
	{ "builtins:getattr",
	  "vllm/sampling_params.py SamplingParams.output_kind (RequestOutputKind, an Enum) on CPython 3.11.0-3.11.6: REDUCE of builtins.getattr on the listed class with the member's name" },
	{ "vllm.v1.core.sched.output:SchedulerOutput",
	  VL_OUT "SchedulerOutput (dataclass): MultiprocExecutor.collective_rpc(\"execute_model\", args=(scheduler_output,)) through shm_broadcast, protocol 5 (V1 engine, 2025 releases)" },
	{ "vllm.v1.core.sched.output:NewRequestData", VL_OUT "NewRequestData (dataclass): SchedulerOutput.scheduled_new_reqs" },
	{ "vllm.v1.core.sched.output:CachedRequestData", VL_OUT "CachedRequestData (dataclass): SchedulerOutput.scheduled_cached_reqs" },
	{ "vllm.v1.core.sched.output:GrammarOutput", VL_OUT "GrammarOutput (dataclass): collective_rpc(\"sample_tokens\", args=(grammar_output,)) (v0.11+)" },
	{ "vllm.sampling_params:SamplingParams",
	  "vllm/sampling_params.py SamplingParams (msgspec Struct, omit_defaults, dict=True, not kw_only: REDUCE of the class with the field values): NewRequestData.sampling_params" },
	{ "vllm.sampling_params:RequestOutputKind", "vllm/sampling_params.py RequestOutputKind (Enum): SamplingParams.output_kind" },
	{ "vllm.sampling_params:StructuredOutputsParams", "vllm/sampling_params.py StructuredOutputsParams (dataclass): SamplingParams.structured_outputs (v0.10.2+)" },
	{ "vllm.sampling_params:GuidedDecodingParams", "vllm/sampling_params.py GuidedDecodingParams (dataclass): SamplingParams.guided_decoding (v0.6-v0.10; renamed StructuredOutputsParams in v0.10.2)" },
	{ "vllm.lora.request:LoRARequest", "vllm/lora/request.py LoRARequest (msgspec Struct, not kw_only: REDUCE of the class with the values): NewRequestData.lora_request" },
	{ "vllm.pooling_params:PoolingParams", "vllm/pooling_params.py PoolingParams (msgspec Struct, not kw_only): NewRequestData.pooling_params of embedding / classification requests" },
	{ "vllm.v1.kv_cache_interface:KVCacheConfig", VL_KV "KVCacheConfig (dataclass): collective_rpc(\"initialize_from_config\", args=(kv_cache_configs,))" },
	{ "vllm.v1.kv_cache_interface:KVCacheTensor", VL_KV "KVCacheTensor (dataclass): KVCacheConfig.kv_cache_tensors" },
	{ "vllm.v1.kv_cache_interface:KVCacheGroupSpec", VL_KV "KVCacheGroupSpec (dataclass): KVCacheConfig.kv_cache_groups" },
	{ "vllm.v1.kv_cache_interface:FullAttentionSpec", VL_KV "FullAttentionSpec (frozen dataclass): KVCacheGroupSpec.kv_cache_spec" },
};

static const struct pprof profiles[] = {
	{ "sglang", "SGLang tokenizer/scheduler/detokenizer IPC (io_struct messages, msgspec and dataclass eras), with tensors and arrays",
	  sglang_v, N(sglang_v) },
	{ "sarathi-serve", "Sarathi-Serve pickle-era StepInputs (engine -> workers) and SamplerOutputs (worker -> engine)",
	  sarathi_v, N(sarathi_v) },
	{ "vllm", "vLLM shm_broadcast (method, args, kwargs, rank) broadcasts: execute_model, sample_tokens, initialize_from_config",
	  vllm_v, N(vllm_v) },
	{ "numpy", "numpy ndarrays (protocols 3-5, in band or out of band), dtypes and scalars; numpy 1.x and 2.x spellings",
	  numpy_v, N(numpy_v) },
	{ "torch", "CPU dense torch tensors of every dtype, their storages (the inner _load_from_bytes stream), torch.Size, dtypes, devices",
	  torch_v, N(torch_v) },
};

const struct pprof *pprof_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < N(profiles); i++)
		if (strcmp(profiles[i].name, name) == 0)
			return &profiles[i];
	return NULL;
}

const struct pprof *pprof_all(size_t *n)
{
	if (n)
		*n = N(profiles);
	return profiles;
}
