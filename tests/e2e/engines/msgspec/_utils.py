"""msgspec._utils.rebuild, as in jcrist/msgspec msgspec/_utils.py: the
function msgspec's Struct.__reduce__ names for structs with keyword-only
fields."""


def rebuild(cls, kwargs):
    """Used to unpickle Structs with keyword-only fields"""
    return cls(**kwargs)
