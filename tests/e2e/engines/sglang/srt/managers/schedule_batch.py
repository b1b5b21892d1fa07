"""Fake sglang.srt.managers.schedule_batch: the classes of it that travel
inside TokenizedGenerateReqInput.mm_inputs and (dataclass era) inside
BatchTokenIDOut.finished_reasons.

Source: sgl-project/sglang python/sglang/srt/managers/schedule_batch.py
(Modality, MultimodalInputFormat, MultimodalDataItem, MultimodalInputs,
MultimodalProcessorOutput, BaseFinishReason and FINISH_*). Versions differ:
MultimodalProcessorOutput is a dataclass in 2025 releases and a msgspec
Struct(kw_only=True, dict=True, array_like=True) in 2026 ones; both wire
shapes are produced through the msgspec emulation's era switch.
"""

import dataclasses
from enum import Enum, auto
from typing import Any, List, Optional

import msgspec


class Modality(Enum):
    IMAGE = auto()
    MULTI_IMAGES = auto()  # removed in later releases; harmless here
    VIDEO = auto()
    AUDIO = auto()


class MultimodalInputFormat(Enum):
    NORMAL = auto()
    PROCESSOR_OUTPUT = auto()
    PRECOMPUTED_EMBEDDING = auto()


@dataclasses.dataclass(eq=False)
class MultimodalDataItem:
    modality: Modality
    hash: Optional[int] = None
    pad_value: Optional[int] = None
    offsets: Optional[list] = None
    format: MultimodalInputFormat = MultimodalInputFormat.NORMAL
    feature: Any = None  # torch.Tensor | np.ndarray
    precomputed_embeddings: Any = None
    model_specific_data: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(eq=False)
class MultimodalInputs:
    mm_items: List[MultimodalDataItem]
    image_pad_len: Optional[list] = None
    num_image_tokens: Optional[int] = None
    im_token_id: Optional[int] = None
    im_start_id: Optional[int] = None
    im_end_id: Optional[int] = None
    slice_start_id: Optional[int] = None
    slice_end_id: Optional[int] = None
    video_token_id: Optional[int] = None
    audio_token_id: Optional[int] = None
    audio_start_id: Optional[int] = None
    audio_end_id: Optional[int] = None
    mrope_positions: Any = None
    mrope_position_delta: Any = None


class MultimodalProcessorOutput(msgspec.Struct, kw_only=True, dict=True, array_like=True):
    mm_items: List[MultimodalDataItem]
    input_ids: Optional[List[int]] = None
    padded_input_ids: Optional[List[int]] = None
    im_token_id: Optional[int] = None
    im_start_id: Optional[int] = None
    im_end_id: Optional[int] = None
    slice_start_id: Optional[int] = None
    slice_end_id: Optional[int] = None
    video_token_id: Optional[int] = None
    audio_token_id: Optional[int] = None
    audio_start_id: Optional[int] = None
    audio_end_id: Optional[int] = None
    mrope_positions: Any = None
    mrope_position_delta: Any = None


class BaseFinishReason:
    def __init__(self, is_error: bool = False):
        self.is_error = is_error


class FINISH_MATCHED_TOKEN(BaseFinishReason):
    def __init__(self, matched):
        super().__init__()
        self.matched = matched


class FINISH_MATCHED_STR(BaseFinishReason):
    def __init__(self, matched: str):
        super().__init__()
        self.matched = matched


class FINISH_LENGTH(BaseFinishReason):
    def __init__(self, length: int):
        super().__init__()
        self.length = length


class FINISH_ABORT(BaseFinishReason):
    def __init__(self, message=None, status_code=None, err_type=None):
        super().__init__(is_error=True)
        self.message = message or "Aborted"
        self.status_code = status_code
        self.err_type = err_type
