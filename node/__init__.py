"""ringlab's store; see node/native.py for the optional compiled build of its hot modules."""

from node import native as _native

_native.install()
