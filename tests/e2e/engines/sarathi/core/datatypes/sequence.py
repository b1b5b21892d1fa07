"""Fake sarathi.core.datatypes.sequence (Source: microsoft/sarathi-serve sarathi/core/datatypes/ sequence.py at 3a210e7):
Sequence (with its LogicalTokenBlocks and SequenceState),
SequenceScheduleMetadata and SamplerOutput, attribute sets as in the source."""

from typing import List

from sarathi.core.datatypes.block import LogicalTokenBlock
from sarathi.core.datatypes.sampling_params import SamplingParams
from sarathi.core.datatypes.sequence_state import SequenceState
from sarathi.core.datatypes.sequence_status import SequenceStatus


class Sequence:
    def __init__(self, seq_id, prompt, prompt_token_ids, block_size,
                 eos_token_id, arrival_time, sampling_params):
        self.seq_id = seq_id
        self.prompt = prompt
        self.block_size = block_size
        self.eos_token_id = eos_token_id
        self.arrival_time = arrival_time
        self.sampling_params = sampling_params
        self.prompt_token_ids = prompt_token_ids
        self.output_token_ids = []
        self.prompt_tokens_processed = 0
        self.prompt_tokens_stage_processed = 0
        self.prompt_processing_finished = False
        self.prompt_stage_processing_finished = False
        self.output_text = ""
        self.logical_token_blocks = []
        self._fill_blocks(prompt_token_ids)
        self.prefix_offset = 0
        self.read_offset = 0
        self.tokens = None
        self.state = SequenceState(seq_id, arrival_time, len(prompt_token_ids))

    def _fill_blocks(self, token_ids):
        i = 0
        while i < len(token_ids):
            if not self.logical_token_blocks or self.logical_token_blocks[-1].free_slots() == 0:
                self.logical_token_blocks.append(
                    LogicalTokenBlock(len(self.logical_token_blocks), self.block_size))
            blk = self.logical_token_blocks[-1]
            take = token_ids[i:i + blk.free_slots()]
            blk.append_tokens(take)
            i += len(take)


class SequenceScheduleMetadata:
    def __init__(self, seq_id, prompt_chunk_len):
        self.seq_id = seq_id
        self.prompt_chunk_len = prompt_chunk_len


class SamplerOutput:
    def __init__(self, seq_id, output_token):
        self.seq_id = seq_id
        self.output_token = output_token


SamplerOutputs = List[SamplerOutput]
