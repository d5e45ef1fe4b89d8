"""Bounds that are pure to check: a failed frame decode keeps nothing alive, [clients] config."""

from __future__ import annotations

import gc
import struct
import tracemalloc

import pytest

from node.config import ConfigError, parse_config
from node.protocol import FrameDecoder, ProtocolError

FRAME = 12 * 1024 * 1024


def test_a_failed_decode_keeps_no_reference_to_the_frame() -> None:
    bad = struct.pack(">I", FRAME) + b"\xc1" * FRAME
    gc.collect()
    gc.disable()  # the node runs with raised thresholds: only reference counting may free it
    try:
        tracemalloc.start()
        decoder = FrameDecoder()
        decoder.feed(bad)
        with pytest.raises(ProtocolError, match="undecodable msgpack"):
            decoder.next_message()
        with pytest.raises(ProtocolError, match="undecodable msgpack"):
            decoder.next_message()  # it stays failed
        del decoder
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        gc.enable()
    print(f"bytes still allocated after a failed {FRAME >> 20} MiB decode: {held}")
    assert held < 1024 * 1024


def test_clients_section_is_validated() -> None:
    cfg = parse_config({"node_id": "n1", "data_dir": "/tmp/x", "clients": {"max_connections": 3, "idle_timeout": 5}})
    assert cfg.clients.max_connections == 3 and cfg.clients.idle_timeout == 5.0
    with pytest.raises(ConfigError, match=r"\[clients\] frame_timeout must be positive"):
        parse_config({"node_id": "n1", "data_dir": "/tmp/x", "clients": {"frame_timeout": 0}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"node_id": "n1", "data_dir": "/tmp/x", "clients": {"max_conns": 3}})
