"""Fake vllm.lora.request.LoRARequest: NewRequestData.lora_request.

Source: vllm-project/vllm vllm/lora/request.py (msgspec.Struct,
omit_defaults=True, array_like=True; not kw_only, so pickled as REDUCE of
the class with the field values).
"""

from typing import Optional

import msgspec


class LoRARequest(msgspec.Struct, omit_defaults=True, array_like=True):
    lora_name: str
    lora_int_id: int
    lora_path: str = ""
    base_model_name: Optional[str] = None
    tensorizer_config_dict: Optional[dict] = None
