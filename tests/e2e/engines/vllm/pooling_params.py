"""Fake vllm.pooling_params.PoolingParams: NewRequestData.pooling_params of
embedding / classification requests.

Source: vllm-project/vllm vllm/pooling_params.py (msgspec.Struct,
omit_defaults=True, array_like=True; REDUCE of the class with the values).
"""

from typing import Optional

import msgspec

from vllm.sampling_params import RequestOutputKind


class PoolingParams(msgspec.Struct, omit_defaults=True, array_like=True):
    truncate_prompt_tokens: Optional[int] = None
    dimensions: Optional[int] = None
    normalize: Optional[bool] = None
    activation: Optional[bool] = None
    task: Optional[str] = None
    requires_token_ids: bool = False
    extra_kwargs: Optional[dict] = None
    output_kind: RequestOutputKind = RequestOutputKind.FINAL_ONLY
