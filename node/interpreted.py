"""What the modules scripts/build_native.py compiles need from a module mypyc does not compile."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    def mypyc_attr(**_: Any) -> Any:
        """mypyc's class options, read by mypyc alone: at run time the class stays as written."""
        return lambda cls: cls


class Packed(bytes):
    """The msgpack bytes of one map, to splice into frames as is (packed once, sent to many);
    here because a compiled module cannot subclass ``bytes``."""
