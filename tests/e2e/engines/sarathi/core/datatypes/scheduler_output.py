"""Fake sarathi.core.datatypes.scheduler_output (Source: microsoft/sarathi-serve sarathi/core/datatypes/ scheduler_output.py at
3a210e7): SchedulerOutputs and the attributes its __init__ derives."""


class SchedulerOutputs:
    def __init__(self, id, ignored_seq_ids, preempted_seq_ids, scheduled_seq_metadata_list):
        self.id = id
        self.ignored_seq_ids = ignored_seq_ids
        self.preempted_seq_ids = preempted_seq_ids
        self.scheduled_seq_metadata_list = sorted(
            scheduled_seq_metadata_list, key=lambda m: m.prompt_chunk_len == 0)
        self.prompt_chunk_lens = [m.prompt_chunk_len for m in scheduled_seq_metadata_list]
        self.num_batched_prompt_tokens = sum(self.prompt_chunk_lens)
        self.num_batched_output_tokens = sum(
            0 if m.prompt_chunk_len > 0 else 1 for m in scheduled_seq_metadata_list)
        self.num_batched_tokens = sum(max(m.prompt_chunk_len, 1) for m in scheduled_seq_metadata_list)
