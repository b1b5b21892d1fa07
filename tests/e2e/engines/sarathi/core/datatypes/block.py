"""Fake sarathi.core.datatypes.block (Source: microsoft/sarathi-serve sarathi/core/datatypes/ block.py at 3a210e7)."""

_BLANK_TOKEN_ID = -1


class LogicalTokenBlock:
    def __init__(self, block_number, block_size):
        self.block_number = block_number
        self.block_size = block_size
        self.token_ids = [_BLANK_TOKEN_ID] * block_size
        self.num_tokens = 0

    def free_slots(self):
        return self.block_size - self.num_tokens

    def append_tokens(self, token_ids):
        n = self.num_tokens
        self.token_ids[n:n + len(token_ids)] = token_ids
        self.num_tokens += len(token_ids)
