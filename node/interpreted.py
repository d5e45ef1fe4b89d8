"""What the modules scripts/build_native.py compiles need from a module mypyc does not compile."""


class Packed(bytes):
    """The msgpack bytes of one map, to splice into frames as is (packed once, sent to many);
    here because a compiled module cannot subclass ``bytes``."""
