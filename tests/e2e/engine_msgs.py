"""Real-shaped engine messages, pickled the way the engines pickle them.

Generators (each yields ``n`` messages; a message is the list of ZMQ frames,
bytes, one engine send):

* ``sglang_msgspec(n, seed)``   SGLang 2026 (msgspec Structs), protocol 5
* ``sglang_dataclass(n, seed)`` SGLang 2024-2025 (dataclasses), protocol 5
* ``sarathi(n, seed)``          Sarathi-Serve pickle era, protocol 4
* ``vllm_shm(n, seed)``         vLLM shm_broadcast remote readers, protocol 5,
                                buffers >= 1 MiB as extra frames

``PROFILE_OF[name]`` lists the shipped profiles a route carrying that traffic
uses (``pickle_globals = [ "@sglang" ];``); ``EXTRA_GLOBALS[name]`` what such a
route must list besides (see the comments there).

The classes come from the fake engine modules in ``tests/e2e/engines``
(named as the real ones); tensors are real torch (Debian python3-torch) and
numpy objects. A worker process that must unpickle these calls
``add_engines_path()`` first, or gets ``worker_env()`` as its environment.
"""

import array
import os
import pickle
import random
import sys
from contextlib import contextmanager
from pathlib import Path

ENGINES_DIR = Path(__file__).resolve().parent / "engines"


def add_engines_path():
    """Put tests/e2e/engines first on sys.path (idempotent)."""
    p = str(ENGINES_DIR)
    if p not in sys.path:
        sys.path.insert(0, p)


def worker_env(base=None):
    """An environment whose Python processes import the fake engines."""
    env = dict(os.environ if base is None else base)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ENGINES_DIR) + (os.pathsep + old if old else "")
    return env


add_engines_path()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import msgspec  # noqa: E402  (the emulation in engines/msgspec)

PROFILE_OF = {
    "sglang_msgspec": ["sglang"],
    "sglang_dataclass": ["sglang"],
    "sarathi": ["sarathi-serve"],
    "vllm_shm": ["vllm"],
}

# What a route must list besides its profile.
EXTRA_GLOBALS = {
    "sglang_msgspec": [],
    "sglang_dataclass": [],
    "sarathi": [],
    "vllm_shm": [
        # The callable of a bytes `method` is the user's (RLHF trainers pass
        # their own functions to collective_rpc): no profile can know it.
        "rlhf_utils:report_weight_checksum",
    ],
}

# Pickles that CPython 3.11.0-3.11.6 writes for Enum members import
# builtins:getattr (and _operator:or_ for composite Flags): @sglang,
# @sarathi-serve and @vllm list it (vLLM's SamplingParams.output_kind is an
# Enum), and the scanner accepts it in that shape only.
PY311_ENUM_GETATTR = (3, 11, 0) <= sys.version_info[:3] <= (3, 11, 6)

VOCAB = 151936


@contextmanager
def wire_era(era):
    old = msgspec.WIRE_ERA
    msgspec.WIRE_ERA = era
    try:
        yield
    finally:
        msgspec.WIRE_ERA = old


def _rid(r):
    return "%032x" % r.getrandbits(128)


def _tokens(r, lo, hi):
    return [r.randrange(VOCAB) for _ in range(r.randint(lo, hi))]


def _tensor(r, rs, shape, dtype):
    a = rs.standard_normal(shape).astype(np.float32)
    if dtype in (torch.int64, torch.int32, torch.uint8, torch.int16, torch.int8):
        a = np.abs(a * 100)
    return torch.from_numpy(a).to(dtype)


def _ndarray(rs, shape, dtype):
    a = rs.standard_normal(shape) * (100 if np.dtype(dtype).kind in "iu" else 1)
    return np.abs(a).astype(dtype) if np.dtype(dtype).kind == "u" else a.astype(dtype)


# --- SGLang -------------------------------------------------------------------

def _sg():
    from sglang.srt.managers import io_struct, schedule_batch
    from sglang.srt.sampling import sampling_params
    return io_struct, schedule_batch, sampling_params


def _sg_sampling(r, sp):
    kw = dict(max_new_tokens=r.choice([16, 128, 512, 2048]),
              temperature=r.choice([0.0, 0.6, 0.7, 1.0]),
              top_p=r.choice([1.0, 0.9, 0.95]), top_k=r.choice([1 << 30, 20, 50]))
    if r.random() < 0.3:
        kw["stop_strs"] = ["</s>", "\n\n"][: r.randint(1, 2)]
    if r.random() < 0.2:
        kw["stop_token_ids"] = {r.randrange(VOCAB) for _ in range(r.randint(1, 3))}
    if r.random() < 0.05:
        kw["json_schema"] = '{"type": "object"}'
    if r.random() < 0.05:
        kw["logit_bias"] = {str(r.randrange(VOCAB)): -100.0}
    if r.random() < 0.05:
        kw["custom_params"] = {"k": 1, "v": ["a", None]}
    return sp.SamplingParams(**kw)


def _sg_mm_item(r, rs, sb):
    mod = r.choice([sb.Modality.IMAGE, sb.Modality.IMAGE, sb.Modality.VIDEO, sb.Modality.AUDIO])
    if r.random() < 0.7:
        feat = _tensor(r, rs, (r.randint(4, 64), 1176 // r.choice([1, 2, 4])),
                       r.choice([torch.float32, torch.float16, torch.bfloat16]))
    else:
        feat = _ndarray(rs, (3, r.randint(8, 32), r.randint(8, 32)), r.choice(["f4", "u1"]))
    msd = {}
    if mod is not sb.Modality.AUDIO:
        msd["image_grid_thw"] = torch.tensor([[1, r.randint(2, 32), r.randint(2, 32)]], dtype=torch.int64)
    if mod is sb.Modality.VIDEO and r.random() < 0.5:
        # One entry per temporal grid. The lengths 99 (0x63, 'c') and 105
        # (0x69, 'i') are on purpose: the legacy torch.save stream inside
        # _load_from_bytes is 5 pickles followed by raw storages, each
        # starting with its int64 element count - here b"c\0\0..." or
        # b"i\0\0...", a GLOBAL/INST opcode for a scanner that reads past the
        # 5th pickle.
        msd["second_per_grid_ts"] = torch.full((r.choice([1, 2, 4, 99, 105]),), 0.5, dtype=torch.float32)
    start = r.randint(0, 50)
    return sb.MultimodalDataItem(modality=mod, hash=r.getrandbits(63), pad_value=r.getrandbits(30),
                                 offsets=[(start, start + r.randint(4, 256))], feature=feat,
                                 model_specific_data=msd)


def _sg_generate_msgspec(r, rs, io, sb, sp, mm):
    ids = _tokens(r, 4, 2048)
    mm_inputs = None
    if mm:
        mm_inputs = sb.MultimodalProcessorOutput(
            mm_items=[_sg_mm_item(r, rs, sb) for _ in range(r.randint(1, 3))],
            im_token_id=151655, im_start_id=151652, im_end_id=151653, video_token_id=151656,
            mrope_positions=_tensor(r, rs, (3, len(ids)), torch.int64) if r.random() < 0.5 else None)
    return io.TokenizedGenerateReqInput(
        rid=_rid(r), http_worker_ipc=r.choice([None, "ipc:///tmp/sglang_tok_0"]),
        input_text=None if r.random() < 0.3 else "x" * r.randint(1, 200),
        input_ids=array.array("q", ids), input_embeds=None, mm_inputs=mm_inputs,
        token_type_ids=None, sampling_params=_sg_sampling(r, sp),
        return_logprob=r.random() < 0.1, logprob_start_len=-1, top_logprobs_num=0,
        token_ids_logprob=None, stream=r.random() < 0.7,
        session_params=io.SessionParams(id=_rid(r), rid=None) if r.random() < 0.05 else None,
        lora_id=r.choice([None, None, None, "lora-7"]),
        bootstrap_host=r.choice([None, "10.0.0.3"]), bootstrap_room=r.getrandbits(40),
        routed_dp_rank=r.choice([None, 0, 1]), priority=r.choice([None, 0, 5]),
        num_items_assigned=({sb.Modality.IMAGE: [0, 1]} if mm and r.random() < 0.3 else None),
        time_stats=_sg_req_time_stats(r))


def _sg_req_time_stats(r):
    """TokenizerManager._create_tokenized_object always attaches the
    request's APIServerReqTimeStats (2026); through the DP controller it is a
    DPControllerReqTimeStats."""
    from sglang.srt.disaggregation.utils import DisaggregationMode
    from sglang.srt.observability import req_time_stats as ts
    mode = r.choice([DisaggregationMode.NULL] * 8 + [DisaggregationMode.PREFILL, DisaggregationMode.DECODE])
    if r.random() < 0.3:
        return ts.DPControllerReqTimeStats(created_time=r.random(), disagg_mode=mode)
    return ts.APIServerReqTimeStats(created_time=r.random(), disagg_mode=mode)


def _sg_sched_time_stats(r, b):
    """The scheduler outputs' time_stats: a list of SchedulerReqTimeStats
    (empty state unless metrics are on), or None."""
    from sglang.srt.observability import req_time_stats as ts
    if r.random() < 0.5:
        return None
    on = r.random() < 0.5
    return [ts.SchedulerReqTimeStats(enable_metrics=on, forward_entry_time=r.random()) for _ in range(b)]


def _sg_finish(r, sb, era):
    k = r.random()
    if era == "msgspec":
        if k < 0.6:
            return None
        if k < 0.8:
            return {"type": "stop", "matched": r.randrange(VOCAB)}
        if k < 0.95:
            return {"type": "length", "length": r.randint(16, 4096)}
        return {"type": "abort", "message": "Aborted", "status_code": None, "err_type": None}
    if k < 0.6:
        return None
    if k < 0.75:
        return sb.FINISH_MATCHED_TOKEN(matched=r.randrange(VOCAB))
    if k < 0.85:
        return sb.FINISH_MATCHED_STR(matched="</s>")
    if k < 0.97:
        return sb.FINISH_LENGTH(length=r.randint(16, 4096))
    return sb.FINISH_ABORT(message="client disconnected", status_code=499)


def _sg_token_id_output(r, rs, io, sb):
    b = r.randint(1, 64)
    none = [None] * b
    return io.BatchTokenIDOutput(
        rids=[_rid(r) for _ in range(b)], http_worker_ipcs=None,
        finished_reasons=[_sg_finish(r, sb, "msgspec") for _ in range(b)],
        decoded_texts=["tok" * r.randint(0, 3) for _ in range(b)],
        decode_ids=[array.array("q", _tokens(r, 1, 8)) for _ in range(b)],
        read_offsets=[r.randint(0, 4) for _ in range(b)],
        output_ids=None if r.random() < 0.8 else [array.array("q", _tokens(r, 1, 8)) for _ in range(b)],
        skip_special_tokens=[True] * b, spaces_between_special_tokens=[True] * b,
        no_stop_trim=[False] * b, prompt_tokens=[r.randint(1, 4096) for _ in range(b)],
        reasoning_tokens=[0] * b, completion_tokens=[r.randint(1, 512) for _ in range(b)],
        cached_tokens=[r.randint(0, 1024) for _ in range(b)],
        input_token_logprobs_val=none, input_token_logprobs_idx=none,
        output_token_logprobs_val=([[r.random() * -5 for _ in range(2)] for _ in range(b)]
                                   if r.random() < 0.1 else none),
        output_token_logprobs_idx=none, input_top_logprobs_val=none, input_top_logprobs_idx=none,
        output_top_logprobs_val=none, output_top_logprobs_idx=none,
        input_token_ids_logprobs_val=none, input_token_ids_logprobs_idx=none,
        output_token_ids_logprobs_val=none, output_token_ids_logprobs_idx=none,
        output_token_entropy_val=None, output_token_sampling_mask=None,
        output_token_sampling_logprobs=None, output_hidden_states=None,
        routed_experts=([_tensor(r, rs, (r.randint(1, 16), 4, 8), torch.int32) for _ in range(b)]
                        if r.random() < 0.05 else None),
        indexer_topk=None, placeholder_tokens_idx=None, placeholder_tokens_val=None,
        dp_ranks=[0] * b if r.random() < 0.3 else None,
        time_stats=_sg_sched_time_stats(r, b),
        input_top_logprobs_val_flat=([_ndarray(rs, (4, 5), "f4") for _ in range(b)]
                                     if r.random() < 0.03 else None),
        input_top_logprobs_idx_flat=None)


def _sg_str_output(r, io, sb):
    b = r.randint(1, 64)
    none = [None] * b
    return io.BatchStrOutput(
        rids=[_rid(r) for _ in range(b)], http_worker_ipcs=None,
        finished_reasons=[_sg_finish(r, sb, "msgspec") for _ in range(b)],
        output_strs=["word " * r.randint(0, 5) for _ in range(b)], output_ids=None,
        prompt_tokens=[r.randint(1, 4096) for _ in range(b)],
        completion_tokens=[r.randint(1, 512) for _ in range(b)], reasoning_tokens=[0] * b,
        cached_tokens=[0] * b,
        input_token_logprobs_val=none, input_token_logprobs_idx=none,
        output_token_logprobs_val=none, output_token_logprobs_idx=none,
        input_top_logprobs_val=none, input_top_logprobs_idx=none,
        output_top_logprobs_val=none, output_top_logprobs_idx=none,
        input_token_ids_logprobs_val=none, input_token_ids_logprobs_idx=none,
        output_token_ids_logprobs_val=none, output_token_ids_logprobs_idx=none,
        output_token_entropy_val=None, output_token_sampling_mask=None,
        output_token_sampling_logprobs=None, output_hidden_states=None,
        routed_experts=None, indexer_topk=None, placeholder_tokens_idx=None,
        placeholder_tokens_val=None, time_stats=_sg_sched_time_stats(r, b))


def _sg_control(r, io, i):
    """The i-th (round robin) control message: every control class of the
    fake io_struct turns up once per len(list) control messages."""
    rid = _rid(r)
    ok = dict(success=True, message="")
    makers = [
        lambda: io.FlushCacheReqInput(rid=rid),
        lambda: io.FlushCacheReqOutput(rid=rid, success=True),
        lambda: io.ClearHiCacheReqInput(rid=rid),
        lambda: io.ClearHiCacheReqOutput(rid=rid, success=True),
        lambda: io.AbortReq(rid=rid, abort_all=r.random() < 0.1,
                            finished_reason={"type": "abort", "message": "Aborted"}),
        lambda: io.ProfileReq(rid=rid, req_type=r.choice(list(io.ProfileReqType)),
                              output_dir="/tmp/prof", num_steps=r.choice([None, 5]),
                              activities=["CPU", "GPU"]),
        lambda: io.ProfileReqOutput(rid=rid, **ok),
        lambda: io.ExpertDistributionReq(rid=rid, action=r.choice(list(io.ExpertDistributionReqType))),
        lambda: io.ExpertDistributionReqOutput(rid=rid),
        lambda: io.BlockReqInput(req_type=r.choice(list(io.BlockReqType))),
        lambda: io.OpenSessionReqInput(capacity_of_str_len=8192, session_id=rid),
        lambda: io.OpenSessionReqOutput(session_id=rid, success=True),
        lambda: io.CloseSessionReqInput(session_id=rid),
        lambda: io.HealthCheckOutput(rid=rid),
        lambda: io.GetInternalStateReq(),
        lambda: io.GetInternalStateReqOutput(internal_state={"max_running_requests": 256, "tp_size": 2}),
        lambda: io.SetInternalStateReq(server_args={"max_micro_batch_size": 8}),
        lambda: io.SetInternalStateReqOutput(updated=True),
        lambda: io.PauseGenerationReqInput(mode=r.choice(["abort", "retract", "in_place"])),
        lambda: io.ContinueGenerationReqInput(),
        lambda: io.UpdateWeightFromDiskReqInput(model_path="/models/m", weight_version="v2"),
        lambda: io.UpdateWeightFromDiskReqOutput(**ok),
        lambda: io.UpdateWeightsFromDistributedReqInput(names=["w"], dtypes=["bfloat16"], shapes=[[4, 4]]),
        lambda: io.UpdateWeightsFromDistributedReqOutput(**ok),
        lambda: io.InitWeightsUpdateGroupReqInput(master_address="10.0.0.1", master_port=29500,
                                                  rank_offset=1, world_size=9),
        lambda: io.InitWeightsUpdateGroupReqOutput(**ok),
        lambda: io.UpdateWeightVersionReqInput(new_version="v3"),
        lambda: io.GetWeightsByNameReqInput(name="lm_head.weight"),
        lambda: io.GetWeightsByNameReqOutput(parameter=[0.1, 0.2]),
        lambda: io.ReleaseMemoryOccupationReqInput(tags=["weights"]),
        lambda: io.ReleaseMemoryOccupationReqOutput(),
        lambda: io.ResumeMemoryOccupationReqInput(tags=["kv_cache"]),
        lambda: io.ResumeMemoryOccupationReqOutput(),
        lambda: io.SlowDownReqInput(forward_sleep_time=0.5),
        lambda: io.SlowDownReqOutput(),
        lambda: io.ActiveRanksOutput(status=[True, True]),
        lambda: io.FreezeGCReq(),
        lambda: io.ConfigureLoggingReq(log_requests=True, log_requests_level=2),
        lambda: io.ParseFunctionCallReq(text="call f()", tools=[io.Tool(function=io.Function(name="f"))]),
        lambda: io.SeparateReasoningReqInput(text="<think>x</think>y", reasoning_parser="deepseek-r1"),
        lambda: io.RpcReqInput(method="save_sharded_model", parameters={"path": "/x"}),
        lambda: io.RpcReqOutput(**ok),
        lambda: io.LoadLoRAAdapterReqInput(lora_name="l", lora_path="/lora/l", lora_id=rid),
        lambda: io.UnloadLoRAAdapterReqInput(lora_name="l", lora_id=rid),
        lambda: io.LoRAUpdateOutput(success=True, loaded_adapters={"l": "/lora/l"}),
    ]
    return makers[i % len(makers)]()


def sglang_msgspec(n, seed):
    io, sb, sp = _sg()
    r = random.Random(seed)
    rs = np.random.RandomState(seed & 0xFFFFFFFF)
    ncontrol = 0
    with wire_era("msgspec"):
        for _ in range(n):
            k = r.random()
            if k < 0.40:
                obj = _sg_generate_msgspec(r, rs, io, sb, sp, mm=r.random() < 0.15)
            elif k < 0.44:
                obj = io.BatchTokenizedGenerateReqInput(
                    batch=[_sg_generate_msgspec(r, rs, io, sb, sp, mm=False) for _ in range(r.randint(2, 8))])
            elif k < 0.76:
                obj = _sg_token_id_output(r, rs, io, sb)
            elif k < 0.90:
                obj = _sg_str_output(r, io, sb)
            elif k < 0.915:
                obj = io.TokenizedEmbeddingReqInput(
                    rid=_rid(r), input_text=None, input_ids=array.array("q", _tokens(r, 4, 512)),
                    mm_inputs=None, token_type_ids=None, sampling_params=sp.SamplingParams(max_new_tokens=0),
                    time_stats=_sg_req_time_stats(r))
            elif k < 0.92:
                obj = io.BatchTokenizedEmbeddingReqInput(batch=[io.TokenizedEmbeddingReqInput(
                    rid=_rid(r), input_text=None, input_ids=array.array("q", _tokens(r, 4, 64)),
                    mm_inputs=None, token_type_ids=None, sampling_params=sp.SamplingParams(max_new_tokens=0))
                    for _ in range(r.randint(2, 4))])
            elif k < 0.93:
                b = r.randint(1, 8)
                obj = io.BatchEmbeddingOutput(
                    rids=[_rid(r) for _ in range(b)], finished_reasons=[None] * b,
                    embeddings=[[r.random() for _ in range(16)] for _ in range(b)],
                    prompt_tokens=[8] * b, cached_tokens=[0] * b,
                    placeholder_tokens_idx=None, placeholder_tokens_val=None,
                    pooled_hidden_states=([_tensor(r, rs, (b, 64), torch.bfloat16)]
                                          if r.random() < 0.3 else None))
            else:
                obj = _sg_control(r, io, ncontrol)
                ncontrol += 1
            yield [pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)]


def _dc(cls, **state):
    """A dataclass-era instance: same module:qualname, old field set."""
    o = cls.__new__(cls)
    o.__dict__.update(state)
    return o


def sglang_dataclass(n, seed):
    io, sb, sp = _sg()
    r = random.Random(seed)
    rs = np.random.RandomState(seed & 0xFFFFFFFF)
    with wire_era("dataclass"):
        for _ in range(n):
            k = r.random()
            if k < 0.45:
                mm = None
                if r.random() < 0.15:
                    mm = sb.MultimodalInputs(mm_items=[_sg_mm_item(r, rs, sb) for _ in range(r.randint(1, 2))],
                                             im_token_id=151655, im_start_id=151652, im_end_id=151653)
                spar = _dc(sp.SamplingParams, temperature=r.choice([0.0, 0.7]), top_p=1.0, top_k=-1,
                           max_new_tokens=r.choice([16, 256]), stop_strs=[], stop_token_ids=None,
                           ignore_eos=False, skip_special_tokens=True, n=1, json_schema=None, regex=None)
                obj = _dc(io.TokenizedGenerateReqInput, rid=_rid(r), input_text="x" * r.randint(0, 64),
                          input_ids=_tokens(r, 4, 1024), mm_inputs=mm, sampling_params=spar,
                          return_logprob=False, logprob_start_len=-1, top_logprobs_num=0,
                          token_ids_logprob=None, stream=r.random() < 0.5, lora_path=None,
                          input_embeds=None, session_params=None, custom_logit_processor=None,
                          return_hidden_states=False, bootstrap_host=None, bootstrap_port=None,
                          bootstrap_room=None)
            elif k < 0.80:
                b = r.randint(1, 32)
                cls = r.choice([io.BatchTokenIDOut, io.BatchTokenIDOutput])
                obj = _dc(cls, rids=[_rid(r) for _ in range(b)],
                          finished_reasons=[_sg_finish(r, sb, "dataclass") for _ in range(b)],
                          decoded_texts=["t"] * b, decode_ids=[_tokens(r, 1, 6) for _ in range(b)],
                          read_offsets=[1] * b, output_ids=None, skip_special_tokens=[True] * b,
                          spaces_between_special_tokens=[True] * b, no_stop_trim=[False] * b,
                          prompt_tokens=[10] * b, completion_tokens=[3] * b, cached_tokens=[0] * b,
                          output_hidden_states=([[r.random() for _ in range(8)] for _ in range(b)]
                                                if r.random() < 0.05 else None))
            elif k < 0.95:
                b = r.randint(1, 32)
                cls = r.choice([io.BatchStrOut, io.BatchStrOutput])
                obj = _dc(cls, rids=[_rid(r) for _ in range(b)],
                          finished_reasons=[_sg_finish(r, sb, "dataclass") for _ in range(b)],
                          output_strs=["w" * r.randint(0, 9) for _ in range(b)],
                          meta_info=[{"prompt_tokens": 10, "completion_tokens": 3}] * b)
            elif k < 0.97:
                b = r.randint(1, 8)
                obj = _dc(io.BatchEmbeddingOut, rids=[_rid(r) for _ in range(b)],
                          embeddings=[[r.random() for _ in range(16)] for _ in range(b)],
                          meta_info=[{"prompt_tokens": 8}] * b, finished_reasons=[None] * b)
            else:
                c = r.randrange(5)
                if c == 4:
                    obj = _dc(io.FlushCacheReq)
                elif c == 0:
                    obj = _dc(io.ProfileReq, type=r.choice(list(io.ProfileReqType)), output_dir=None,
                              num_steps=None, activities=None)
                elif c == 1:
                    obj = _dc(io.AbortReq, rid=_rid(r))
                elif c == 2:
                    obj = _dc(io.FlushCacheReqInput)
                else:
                    obj = _dc(io.ExpertDistributionReq, action=r.choice(list(io.ExpertDistributionReqType)))
            yield [pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)]


# --- Sarathi-Serve ------------------------------------------------------------

def sarathi(n, seed):
    from sarathi.core.datatypes.sampling_params import SamplingParams
    from sarathi.core.datatypes.scheduler_output import SchedulerOutputs
    from sarathi.core.datatypes.sequence import SamplerOutput, Sequence, SequenceScheduleMetadata
    from sarathi.core.datatypes.sequence_status import SequenceStatus
    from sarathi.core.datatypes.step_inputs import StepInputs

    r = random.Random(seed)
    step = 0

    def seq():
        spar = SamplingParams(temperature=r.choice([0.0, 0.8, 1.0]), top_p=r.choice([1.0, 0.9]),
                              stop=r.choice([None, "</s>", ["\n\n", "###"]]), max_tokens=r.randint(16, 1024))
        if r.random() < 0.5:
            spar.sampling_type  # cached_property: the SamplingType member lands in __dict__
        s = Sequence(seq_id=str(r.randrange(10 ** 6)), prompt=None if r.random() < 0.5 else "p" * 40,
                     prompt_token_ids=_tokens(r, 1, 600), block_size=16, eos_token_id=2,
                     arrival_time=1.7e9 + r.random(), sampling_params=spar)
        if r.random() < 0.3:
            s.state._status = r.choice(list(SequenceStatus))
        return s

    def sched_out():
        nonlocal step
        step += 1
        md = [SequenceScheduleMetadata(str(r.randrange(10 ** 6)), r.choice([0, 0, 0, r.randint(1, 512)]))
              for _ in range(r.randint(1, 48))]
        return SchedulerOutputs(step, [], [str(r.randrange(10 ** 6))] if r.random() < 0.05 else [], md)

    for _ in range(n):
        k = r.random()
        if k < 0.55:
            new = [seq() for _ in range(r.choice([0, 0, 0, 1, 2, 4]))]
            pend = None
            if r.random() < 0.3:  # pipeline-parallel engine
                pend = [(sched_out(), [SamplerOutput(str(r.randrange(10 ** 6)), r.randrange(VOCAB))
                                       for _ in range(r.randint(1, 16))]) for _ in range(r.randint(0, 2))]
            obj = StepInputs(sched_out(), new_seqs=new, pending_step_outputs=pend)
        elif k < 0.95:
            obj = [SamplerOutput(str(r.randrange(10 ** 6)), r.randrange(VOCAB)) for _ in range(r.randint(1, 64))]
        else:
            obj = None  # microbatch_socket.send_pyobj(None)
        yield [pickle.dumps(obj, protocol=4)]


# --- vLLM shm_broadcast ---------------------------------------------------------

def vllm_shm(n, seed):
    import cloudpickle

    import rlhf_utils
    from vllm.distributed.device_communicators.shm_broadcast import enqueue_frames
    from vllm.lora.request import LoRARequest
    from vllm.pooling_params import PoolingParams
    from vllm.sampling_params import (GuidedDecodingParams, RequestOutputKind, SamplingParams,
                                      StructuredOutputsParams)
    from vllm.v1.core.sched.output import CachedRequestData, GrammarOutput, NewRequestData, SchedulerOutput
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec, KVCacheTensor

    r = random.Random(seed)
    rs = np.random.RandomState(seed & 0xFFFFFFFF)

    def sampling():
        so = None
        if r.random() < 0.03:  # releases before v0.10.2: SamplingParams.guided_decoding
            so = GuidedDecodingParams(json={"type": "object"}, backend="xgrammar")
        elif r.random() < 0.08:
            so = StructuredOutputsParams(json={"type": "object"} if r.random() < 0.5 else None,
                                         regex=None if r.random() < 0.5 else "[a-z]+")
        return SamplingParams(temperature=r.choice([0.0, 0.7, 1.0]), top_p=r.choice([1.0, 0.95]),
                              max_tokens=r.choice([16, 256, 4096]), seed=r.choice([None, 1234]),
                              stop=r.choice([None, ["</s>"]]),
                              output_kind=r.choice(list(RequestOutputKind)), structured_outputs=so,
                              _all_stop_token_ids={2, 151643}, _eos_token_id=151643)

    def new_req():
        ids = _tokens(r, 1, 1500)
        emb = _tensor(r, rs, (len(ids) % 64 + 1, 64), torch.bfloat16) if r.random() < 0.02 else None
        pooling = r.random() < 0.03  # embedding / classify requests: pooling params, no sampling params
        return NewRequestData(req_id=f"cmpl-{_rid(r)}-0", prompt_token_ids=ids, mm_features=[],
                              sampling_params=None if pooling else sampling(),
                              pooling_params=(PoolingParams(task=r.choice(["embed", "classify"]),
                                                            normalize=True) if pooling else None),
                              block_ids=([r.randrange(50000) for _ in range(len(ids) // 16 + 1)],),
                              num_computed_tokens=r.choice([0, 0, 16, 256]),
                              lora_request=(LoRARequest("sql-lora", r.randint(1, 8), "/loras/sql")
                                            if r.random() < 0.05 else None),
                              prompt_embeds=emb)

    def sched():
        news = [new_req() for _ in range(r.choice([0, 0, 0, 1, 2, 8]))]
        nc = r.randint(0, 128)
        ids = [f"cmpl-{_rid(r)}-0" for _ in range(nc)]
        cached = CachedRequestData(req_ids=ids, resumed_req_ids=set(ids[:1]) if r.random() < 0.05 else set(),
                                   new_token_ids=[[] for _ in ids],
                                   new_block_ids=[None if r.random() < 0.9 else ([r.randrange(50000)],) for _ in ids],
                                   num_computed_tokens=[r.randint(1, 8192) for _ in ids],
                                   num_output_tokens=[r.randint(1, 4096) for _ in ids])
        nst = {x.req_id: len(x.prompt_token_ids) for x in news}
        nst.update({i: 1 for i in ids})
        return SchedulerOutput(scheduled_new_reqs=news, scheduled_cached_reqs=cached,
                               num_scheduled_tokens=nst, total_num_scheduled_tokens=sum(nst.values()),
                               scheduled_spec_decode_tokens={}, scheduled_encoder_inputs={},
                               num_common_prefix_blocks=[r.randint(0, 4)],
                               finished_req_ids={f"cmpl-{_rid(r)}-0" for _ in range(r.choice([0, 0, 1, 3]))},
                               free_encoder_mm_hashes=[])

    for _ in range(n):
        k = r.random()
        rank = None
        if k < 0.72:
            obj = ("execute_model", (sched(),), {}, rank)
        elif k < 0.86:
            g = None
            if r.random() < 0.5:
                nreq = r.choice([1, 4, 16, 64])  # 64 rows of a 152k vocab: 1.2 MB, out of band
                g = GrammarOutput(structured_output_request_ids=[f"cmpl-{_rid(r)}-0" for _ in range(nreq)],
                                  grammar_bitmask=rs.randint(-2 ** 31, 2 ** 31 - 1,
                                                             size=(nreq, (VOCAB + 31) // 32), dtype=np.int32))
            obj = ("sample_tokens", (g,), {}, rank)
        elif k < 0.93:
            obj = (r.choice(["determine_available_memory", "check_health", "get_kv_cache_spec",
                             "compile_or_warm_up_model", "reset_prefix_cache"]), (), {}, r.choice([None, 0]))
        elif k < 0.96:
            spec = FullAttentionSpec(block_size=16, num_kv_heads=8, head_size=128,
                                     dtype=r.choice([torch.bfloat16, torch.float16, torch.float8_e4m3fn
                                                     if hasattr(torch, "float8_e4m3fn") else torch.float16]))
            layers = [f"model.layers.{i}.self_attn.attn" for i in range(r.randint(2, 32))]
            cfg = KVCacheConfig(num_blocks=r.randint(1000, 90000),
                                kv_cache_tensors=[KVCacheTensor(size=1 << 30, shared_by=[l]) for l in layers],
                                kv_cache_groups=[KVCacheGroupSpec(layer_names=layers, kv_cache_spec=spec)])
            obj = ("initialize_from_config", ([cfg] * r.randint(1, 4),), {}, None)
        else:
            meth = cloudpickle.dumps(rlhf_utils.report_weight_checksum, protocol=pickle.HIGHEST_PROTOCOL)
            obj = (meth, (), {}, None)
        yield enqueue_frames(obj)


GENERATORS = {
    "sglang_msgspec": sglang_msgspec,
    "sglang_dataclass": sglang_dataclass,
    "sarathi": sarathi,
    "vllm_shm": vllm_shm,
}


# --- what CPython imports ---------------------------------------------------------

def imports_of(frames):
    """Every (module:qualname) CPython's find_class is asked for when a worker
    loads this message: frame 0 with the out-of-band frames as buffers, plus
    what the nested loads the engines perform ask for: the legacy torch.save
    stream torch.storage._load_from_bytes unpickles (a sequence of pickles
    with a persistent_load), and vLLM's bytes `method` (cloudpickle.loads).
    Returns a list of (global, where) with where = "top" or "nested"."""
    import io
    import torch.storage

    seen = []

    class Rec(pickle.Unpickler):
        where = "top"

        def find_class(self, module, name):
            seen.append((f"{module}:{name}", self.where))
            obj = super().find_class(module, name)
            if obj is torch.storage._load_from_bytes:
                return _recording_load_from_bytes
            return obj

    def _recording_load_from_bytes(b):
        f = io.BytesIO(b)
        # magic number, protocol version, sys_info, the object, storage keys;
        # raw storage bytes follow the last pickle.
        for _ in range(5):
            u = Rec(f)
            u.where = "nested"
            u.persistent_load = lambda pid: None
            try:
                u.load()
            except Exception:
                break
        return torch.storage._load_from_bytes(b)

    obj = Rec(io.BytesIO(frames[0]), buffers=frames[1:]).load()
    if isinstance(obj, tuple) and len(obj) == 4 and isinstance(obj[0], (bytes, bytearray)):
        u = Rec(io.BytesIO(obj[0]))
        u.where = "nested"
        u.load()
    return seen
