"""Fake vllm.v1.kv_cache_interface: the argument of the
initialize_from_config RPC (one KVCacheConfig per worker).

Source: vllm-project/vllm vllm/v1/kv_cache_interface.py (KVCacheTensor,
KVCacheGroupSpec, KVCacheConfig, FullAttentionSpec; dtype is a torch.dtype,
pickled as torch:<dtype name>).
"""

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class FullAttentionSpec:
    block_size: int
    num_kv_heads: int
    head_size: int
    dtype: Any
    sliding_window: Optional[int] = None
    attention_chunk_size: Optional[int] = None


@dataclass
class KVCacheTensor:
    size: int
    shared_by: list


@dataclass
class KVCacheGroupSpec:
    layer_names: list
    kv_cache_spec: Any


@dataclass
class KVCacheConfig:
    num_blocks: int
    kv_cache_tensors: list
    kv_cache_groups: list
