"""A user's module, as an RLHF trainer passes to vLLM's
collective_rpc(fn): a module-level function cloudpickle pickles by
reference (the nested pickle imports rlhf_utils:report_weight_checksum and
nothing else). A function pickled by value (lambda, closure, __main__)
imports cloudpickle's function rebuilders instead - gadgets no profile lists.
"""


def report_weight_checksum(self):
    return getattr(self, "rank", 0)
