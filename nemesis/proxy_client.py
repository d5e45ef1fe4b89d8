"""The harness's door to a Toxiproxy server (ours, nemesis/proxy.py, or a real one by URL).

A small HTTP/1.1 client of its own over Trio and h11 (both already the harness's), in place of
toxiproxy-python: that library (0.1.1, 2019) keeps the server address in class attributes,
passes no timeout to ``requests``, and raises its own exception per status, which took a thread
per request, a subclass per client and an exception table to make safe. Here instead:

* every request is one connection under one Trio deadline, so a server that accepts and never
  answers costs nothing but the wait, never a stuck nemesis or an abandoned thread;
* every failure (refused connection, timeout, an error status, a body that is not JSON, an
  answer that is not HTTP) becomes a :class:`ProxyError` naming the operation and the proxy.

Toxics this module adds are named ``ringlab_<kind>_<stream>`` so that healing removes exactly
ringlab's faults and leaves anything else on a shared Toxiproxy server alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import h11
import trio

# A healthy proxy server answers in milliseconds; 5 s means it is wedged, and a nemesis step
# must give up and report rather than stall the run's schedule.
DEFAULT_TIMEOUT_S = 5.0
# Bytes per read of an answer; Toxiproxy's largest (GET /proxies of a big cluster) is a few KiB.
READ_CHUNK = 64 * 1024
# Prefix of every toxic ringlab adds; heal() removes these and nothing else.
TOXIC_PREFIX = "ringlab_"
STREAMS = ("upstream", "downstream")


class ProxyError(Exception):
    """A fault-proxy operation failed; names the operation, the proxy and the cause."""

    def __init__(self, operation: str, proxy: str | None, detail: str,
                 status: int | None = None) -> None:
        where = f" on proxy {proxy!r}" if proxy else ""
        super().__init__(f"fault proxy {operation}{where} failed: {detail}")
        self.operation = operation
        self.proxy = proxy
        self.detail = detail
        self.status = status


def link_name(src: str, dst: str) -> str:
    """The proxy name for the directed link carrying connections from ``src`` to ``dst``."""
    return f"{src}_to_{dst}"


def _toxic_name(kind: str, stream: str) -> str:
    return f"{TOXIC_PREFIX}{kind}_{stream}"


def _error_text(content: Any) -> str:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    text = str(content).strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:200] or "(empty body)"
    if isinstance(parsed, dict) and "error" in parsed:
        return str(parsed["error"])
    return text[:200]


class ProxyClient:
    """Drive a Toxiproxy-compatible server at ``url`` from Trio, with timeouts everywhere."""

    def __init__(self, url: str = "http://127.0.0.1:8474", *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, token: str | None = None) -> None:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        try:
            port = parts.port
        except ValueError:  # a port that is not a number, or out of range
            port = None
        if parts.scheme != "http" or not parts.hostname or port is None:
            raise ValueError(f"toxiproxy URL must look like http://HOST:PORT, got {url!r}")
        self.url = f"http://{parts.netloc}"
        self.host, self.port = parts.hostname, port
        self.timeout_s = timeout_s
        self.token = token  # ringlab's fault proxy: sent as x-ringlab-token (Toxiproxy ignores it)

    async def _call(self, operation: str, proxy: str | None, method: str, path: str,
                    body: Any = None, *, tolerate: Iterable[int] = ()) -> Any:
        """One HTTP request; the decoded JSON (or None); ProxyError on any failure."""
        try:
            with trio.fail_after(self.timeout_s):
                status, content = await self._exchange(method.upper(), path, body)
        except trio.TooSlowError:
            raise ProxyError(operation, proxy, f"no answer from {self.url} within {self.timeout_s} s") from None
        except OSError as exc:
            raise ProxyError(operation, proxy, f"cannot reach {self.url}: {exc.strerror or exc}") from None
        except (h11.ProtocolError, trio.BrokenResourceError) as exc:
            raise ProxyError(operation, proxy, f"{self.url} did not answer in HTTP: {exc}") from None
        if status >= 400:
            if status in set(tolerate):
                return None
            raise ProxyError(operation, proxy, f"HTTP {status}: {_error_text(content)}", status)
        if status == 204 or not content.strip():
            return None
        try:
            return json.loads(content)
        except ValueError:
            raise ProxyError(operation, proxy, f"answer is not JSON: {content[:100]!r}") from None

    async def _exchange(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        """Send one request on a fresh connection; (status, body) of the answer."""
        data = b"" if body is None else json.dumps(body).encode()
        headers = [("host", f"{self.host}:{self.port}"), ("user-agent", "ringlab"),
                   ("content-length", str(len(data))), ("connection", "close")]
        if body is not None:
            headers.append(("content-type", "application/json"))
        if self.token:
            headers.append(("x-ringlab-token", self.token))
        conn = h11.Connection(h11.CLIENT)
        stream = await trio.open_tcp_stream(self.host, self.port)
        async with stream:
            await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=headers)))
            if data:
                await stream.send_all(conn.send(h11.Data(data=data)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            status, chunks = 0, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(READ_CHUNK))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return status, b"".join(chunks)
                # an InformationalResponse (1xx) is followed by the real one: keep reading

    @staticmethod
    def _path(name: str, *rest: str) -> str:
        return "/proxies/" + "/".join(quote(p, safe="") for p in (name, *rest))

    # -- server ---------------------------------------------------------------------------

    async def version(self) -> str:
        """The server's version string (ours reports '2.x.y-ringlab')."""
        answer = await self._call("version", None, "get", "/version")
        if isinstance(answer, dict) and "version" in answer:
            return str(answer["version"])
        return str(answer)

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (ringlab's and anyone else's)."""
        await self._call("reset", None, "post", "/reset")

    async def proxies(self) -> dict[str, dict[str, Any]]:
        """Every proxy with its fields and toxics, by name."""
        answer = await self._call("list proxies", None, "get", "/proxies")
        if not isinstance(answer, dict):
            raise ProxyError("list proxies", None, f"unexpected answer {answer!r}")
        return answer

    # -- proxies --------------------------------------------------------------------------

    async def create_proxies(self, proxies: Mapping[str, tuple[str, str]]) -> dict[str, str]:
        """Create (or keep, or replace) proxies {name: (listen, upstream)}; returns name → listen."""
        body = [{"name": name, "listen": listen, "upstream": upstream, "enabled": True}
                for name, (listen, upstream) in proxies.items()]
        names = ", ".join(proxies)
        answer = await self._call("populate", names, "post", "/populate", body)
        # Toxiproxy answers an empty populate (a 1-node cluster has no links) with "proxies": null.
        created = answer.get("proxies") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or not isinstance(created, (list, type(None))):
            raise ProxyError("populate", names, f"unexpected answer {answer!r}")
        return {p["name"]: p["listen"] for p in created or []}

    async def delete_proxies(self, names: Iterable[str]) -> None:
        """Delete proxies by name; already-missing ones are fine."""
        for name in names:
            await self._call("delete proxy", name, "delete", self._path(name), tolerate=(404,))

    async def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable one proxy (disabling closes its listener and connections)."""
        await self._call("enable" if enabled else "disable", name, "post", self._path(name),
                         {"enabled": enabled})

    # -- faults ---------------------------------------------------------------------------

    async def _add_toxic(self, name: str, kind: str, type_: str, stream: str,
                         attributes: dict[str, int]) -> None:
        toxic = _toxic_name(kind, stream)
        body = {"name": toxic, "type": type_, "stream": stream, "toxicity": 1.0,
                "attributes": attributes}
        created = await self._call(f"add {kind}", name, "post", self._path(name, "toxics"), body,
                                   tolerate=(409,))
        if created is None:  # already there: make it say what we want now
            await self._call(f"update {kind}", name, "post",
                             self._path(name, "toxics", toxic),
                             {"attributes": attributes, "toxicity": 1.0})

    async def _remove_toxic(self, name: str, kind: str, stream: str) -> None:
        await self._call(f"remove {kind}", name, "delete",
                         self._path(name, "toxics", _toxic_name(kind, stream)), tolerate=(404,))

    async def partition(self, links: Iterable[str]) -> None:
        """Cut the named link proxies: timeout=0 on both streams, so traffic silently stops."""
        for name in links:
            for stream in STREAMS:
                await self._add_toxic(name, "partition", "timeout", stream, {"timeout": 0})

    async def cut_streams(self, cuts: Iterable[tuple[str, str]]) -> None:
        """Cut single streams: (proxy name, 'upstream' | 'downstream'), with timeout=0."""
        for name, stream in cuts:
            if stream not in STREAMS:
                raise ValueError(f"stream must be upstream or downstream, got {stream!r}")
            await self._add_toxic(name, "partition", "timeout", stream, {"timeout": 0})

    async def heal(self, links: Iterable[str] | None = None) -> None:
        """Remove ringlab's partition toxics from the named proxies (default: every proxy)."""
        await self._remove_kind("partition", links)

    async def add_latency(self, links: Iterable[str], latency_ms: int,
                          jitter_ms: int = 0) -> None:
        """Delay every byte crossing the named link proxies by latency ± jitter, both streams."""
        for name in links:
            for stream in STREAMS:
                await self._add_toxic(name, "latency", "latency", stream,
                                      {"latency": int(latency_ms), "jitter": int(jitter_ms)})

    async def remove_latency(self, links: Iterable[str] | None = None) -> None:
        """Remove ringlab's latency toxics from the named proxies (default: every proxy)."""
        await self._remove_kind("latency", links)

    async def heal_all(self) -> None:
        """Remove every toxic ringlab added, on every proxy, and re-enable disabled proxies."""
        for name, proxy in (await self.proxies()).items():
            for toxic in proxy.get("toxics") or []:
                if str(toxic.get("name", "")).startswith(TOXIC_PREFIX):
                    await self._call("heal", name, "delete",
                                     self._path(name, "toxics", toxic["name"]), tolerate=(404,))
            if not proxy.get("enabled", True):
                await self.set_enabled(name, True)

    async def _remove_kind(self, kind: str, links: Iterable[str] | None) -> None:
        if links is None:
            current = await self.proxies()
            wanted = {_toxic_name(kind, s) for s in STREAMS}
            names = [n for n, p in current.items()
                     if any(t.get("name") in wanted for t in p.get("toxics") or [])]
        else:
            names = list(links)
        for name in names:
            for stream in STREAMS:
                await self._remove_toxic(name, kind, stream)


class ProxyNet:
    """The nemesis's view of the network: link proxies on a Toxiproxy-compatible server."""

    def __init__(self, client: ProxyClient) -> None:
        self.client = client

    async def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Hold traffic on each directed link."""
        await self.client.partition(link_name(a, b) for a, b in sorted(links))

    async def heal(self) -> None:
        """Remove every partition toxic."""
        await self.client.heal()

    async def slow(self, links: Iterable[tuple[str, str]], latency_ms: int, jitter_ms: int) -> None:
        """Add latency to each link."""
        await self.client.add_latency([link_name(a, b) for a, b in sorted(links)], latency_ms, jitter_ms)

    async def unslow(self) -> None:
        """Remove every latency toxic."""
        await self.client.remove_latency()
