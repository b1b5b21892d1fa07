"""Fake sarathi.core.datatypes.sequence_state (Source: microsoft/sarathi-serve sarathi/core/datatypes/ sequence_state.py at
3a210e7): the attribute set of SequenceState.__init__."""

from sarathi.core.datatypes.sequence_status import SequenceStatus


class SequenceState:
    def __init__(self, id, arrived_at, num_prompt_tokens):
        self._id = id
        self._arrived_at = arrived_at
        self._num_prompt_tokens = num_prompt_tokens
        self._num_output_tokens = 0
        self._status = SequenceStatus.WAITING
        self._is_scheduled = False
        self._is_completed = False
        self._scheduled_at = None
        self._completed_at = None
        self._prompt_processing_completed_at = None
        self._last_restart_at = None
        self._last_pause_at = None
        self._execution_time = 0.0
        self._preempted_time = 0.0
        self._last_execution_start_at = None
        self._num_restarts = 0
        self._num_pauses = 0
        self._is_ignore_finished = False
        self._last_token_generated_at = None
        self._last_token_generation_time = 0.0
