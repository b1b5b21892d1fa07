"""An engine-style message class for the shape attacks of gadgets.py.

``Task`` is what an operator would list in pickle_globals: a plain class
whose instances travel as NEWOBJ + BUILD with a state dict (the shape of
dataclass-era SGLang messages; no __setstate__). Like many engine classes it
keeps a process-wide setting as a class attribute (``trace_dir``: when an
operator sets it, every request is written there when it is logged), and its
module imports ``os`` as almost every engine module does. Those two facts
are all the shape attacks need:

- BUILD applied to the class object itself, or setattr on it, changes
  ``trace_dir`` (or any method, ``__setstate__`` included) for every later
  instance: the next Task the worker logs (worker.py records repr() of what
  it loaded) writes a file the attacker names.
- ``Task.__init__.__globals__["os"].system`` is reachable from the class
  through attribute access (getattr chains, dotted qualnames).
"""

import os


class Task:
    trace_dir = None

    def __init__(self, rid="", prompt=""):
        self.rid = rid
        self.prompt = prompt

    def __repr__(self):
        if self.trace_dir:
            with open(os.path.join(self.trace_dir, self.rid), "w") as f:
                f.write(self.prompt)
        return f"Task(rid={self.rid!r})"
