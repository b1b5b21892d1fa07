"""Classes a policy test's worker and clients share (the worker imports
this module when it unpickles: tests/e2e is its script directory).
Shaped like an engine's IPC structs: a dataclass with an Enum and a Flag
field (CPython 3.11.2 pickles their members with builtins.getattr, and a
composite Flag with _operator.or_)."""

import dataclasses
import enum
import typing


class Mode(enum.Enum):
    PREFILL = 1
    DECODE = 2


class Perm(enum.Flag):
    R = 1
    W = 2
    X = 4


@dataclasses.dataclass
class Req:
    rid: str
    input_ids: typing.List[int]
    mode: Mode
    perm: Perm
    params: dict


GLOBALS = ["policy_types:Req", "policy_types:Mode", "policy_types:Perm", "builtins:getattr",
           "_operator:or_", "collections:OrderedDict"]
