"""Fake sarathi.core.datatypes.sequence_status (Source: microsoft/sarathi-serve sarathi/core/datatypes/
sequence_status.py at 3a210e7, the last pickle-era commit)."""

import enum


class SequenceStatus(enum.Enum):
    WAITING = enum.auto()
    RUNNING = enum.auto()
    PAUSED = enum.auto()
    FINISHED_STOPPED = enum.auto()
    FINISHED_LENGTH_CAPPED = enum.auto()
    FINISHED_IGNORED = enum.auto()
