"""Fake sarathi.core.datatypes.step_inputs (Source: microsoft/sarathi-serve sarathi/core/datatypes/ step_inputs.py at 3a210e7):
the dataclass the engine send_pyobj()s to every worker each step."""

from dataclasses import dataclass
from typing import List, Optional, Tuple

from sarathi.core.datatypes.scheduler_output import SchedulerOutputs
from sarathi.core.datatypes.sequence import SamplerOutputs, Sequence


@dataclass
class StepInputs:
    scheduler_outputs: SchedulerOutputs
    new_seqs: Optional[List[Sequence]] = None
    pending_step_outputs: Optional[List[Tuple[SchedulerOutputs, SamplerOutputs]]] = None
