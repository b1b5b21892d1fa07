"""Emulation of msgspec.Struct's pickle wire shape (Debian 12 ships no msgspec).

Real msgspec (jcrist/msgspec, msgspec/_core.c Struct.__reduce__ and
msgspec/_utils.py rebuild) pickles a Struct instance as
  * (msgspec._utils.rebuild, (cls, {field: value, ...}))  if the struct has
    keyword-only fields (kw_only=True, as every SGLang BaseReq), and
  * (cls, (value, ...))                                     otherwise
    (e.g. vLLM's SamplingParams: omit_defaults=True, dict=True).
This module reproduces exactly that __reduce__, nothing else: no validation,
no msgpack. Its only other job is the era switch used by the fake SGLang
modules: SGLang's dataclass-era releases had classes with the same
module:qualname that pickled as plain objects (NEWOBJ + BUILD of __dict__);
with WIRE_ERA = "dataclass" a Struct pickles that way instead.
"""

import copyreg

from msgspec import _utils

WIRE_ERA = "msgspec"  # or "dataclass"

_NODEFAULT = object()


class _Field:
    def __init__(self, default=_NODEFAULT, default_factory=None):
        self.default = default
        self.default_factory = default_factory


def field(*, default=_NODEFAULT, default_factory=None, name=None):
    return _Field(default, default_factory)


class Struct:
    __struct_fields__ = ()
    __struct_defaults__ = {}
    __struct_kw_only__ = False

    def __init_subclass__(cls, kw_only=False, **options):
        super().__init_subclass__()
        fields = list(getattr(cls, "__struct_fields__", ()))
        defaults = dict(getattr(cls, "__struct_defaults__", {}))
        for name in cls.__dict__.get("__annotations__", {}):
            if name not in fields:
                fields.append(name)
            if name in cls.__dict__:
                v = cls.__dict__[name]
                defaults[name] = v
                if isinstance(v, _Field):
                    delattr(cls, name)
        cls.__struct_fields__ = tuple(fields)
        cls.__struct_defaults__ = defaults
        cls.__struct_kw_only__ = bool(kw_only) or getattr(cls, "__struct_kw_only__", False)

    def __init__(self, *args, **kwargs):
        names = self.__struct_fields__
        for name, v in zip(names, args):
            kwargs[name] = v
        for name in names:
            if name in kwargs:
                v = kwargs.pop(name)
            else:
                d = self.__struct_defaults__.get(name, _NODEFAULT)
                if isinstance(d, _Field):
                    d = d.default_factory() if d.default_factory else d.default
                if d is _NODEFAULT:
                    raise TypeError(f"missing required argument {name!r}")
                v = d
            object.__setattr__(self, name, v)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def __reduce_ex__(self, protocol):
        if WIRE_ERA == "dataclass":
            # What object.__reduce_ex__(protocol >= 2) gives a plain class or
            # dataclass: copyreg.__newobj__ (written as the NEWOBJ opcode, no
            # global) + BUILD of __dict__ (None when empty, as 3.11's
            # object.__getstate__).
            return (copyreg.__newobj__, (type(self),), dict(self.__dict__) or None)
        return self.__reduce__()

    def __reduce__(self):
        cls = type(self)
        if cls.__struct_kw_only__:
            return (_utils.rebuild, (cls, {n: getattr(self, n) for n in cls.__struct_fields__}))
        return (cls, tuple(getattr(self, n) for n in cls.__struct_fields__))

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, n) == getattr(other, n) for n in self.__struct_fields__)

    def __repr__(self):
        # From __dict__: a dataclass-era instance has another field set.
        return f"{type(self).__name__}(" + ", ".join(
            f"{n}={v!r}" for n, v in self.__dict__.items()) + ")"
