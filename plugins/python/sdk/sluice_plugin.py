"""Write Sluice transform plugins in Python.

A Sluice plugin is a WebAssembly component that implements the `transformer` world of the
`sluice:plugin` WIT package (`wit/sluice.wit`). componentize-py builds one from a Python module
and generates the bindings for that world; this module wraps them so that a plugin is a class
with two methods and a few helpers for JSON, records, state, settings and the run's log:

    import sluice_plugin as sluice

    class Orders(sluice.Plugin):
        def transform(self, poll, response):
            orders = sluice.body_json(response)
            sluice.info(f"{len(orders)} orders")
            return sluice.output([sluice.json_record(o, str(o["id"])) for o in orders])

    WitWorld = sluice.export(Orders)

Build it with the pinned componentize-py (`pip install componentize-py==0.25.1`), with this
file and the WIT directory beside the module:

    componentize-py -d wit -w transformer componentize app -o plugin.wasm

Raise `Rejected` for input that will never work (the run fails and the state stays where it
was) and `Retry` for a transient problem (the run is retried on the project's schedule). Any
other exception traps the component: the host reports it as a plugin failure with the last
line of the traceback, so prefer raising one of the two.

The host may run any call on a fresh instance, so keep anything that must outlive a call in
the state (`output(..., state=json_state(...))`), not in globals.

Outside WebAssembly (in a plugin's unit tests under plain `python3`) there are no generated
bindings: this module then defines the same types itself and the log goes to stderr.
"""

import json
import sys
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

try:
    from componentize_py_types import Err
    from wit_world.imports import host as _host
    from wit_world.imports.types import Error_Rejected, Error_Retry, Output, Poll, Record, Request, Response

    _NATIVE = False
except ImportError:
    # Natively there is no host: the same records as the generated ones, so unit tests build
    # inputs and read outputs exactly as the component does.
    _NATIVE = True

    @dataclass
    class Poll:
        project_id: str
        tenant_id: str
        scheduled_at_ms: int
        state: Optional[bytes]
        settings: List[Tuple[str, str]]

    @dataclass
    class Request:
        method: str
        url: str
        headers: List[Tuple[str, str]]
        body: Optional[bytes]

    @dataclass
    class Response:
        status: int
        headers: List[Tuple[str, str]]
        body: bytes

    @dataclass
    class Record:
        data: bytes
        partition_key: str
        explicit_hash_key: Optional[str]

    @dataclass
    class Output:
        records: List[Record]
        state: Optional[bytes]
        next: Optional[Request]


class Rejected(Exception):
    """The input is bad and retrying will not help: the run fails and the state stays put."""


class Retry(Exception):
    """A transient problem: the run fails and is retried on the project's schedule."""


class Plugin:
    """A transform plugin: subclass it, override `transform`, and export it with `export`."""

    def prepare(self, poll: Poll, request: Request) -> Request:
        """Adjusts the request before the host sends it, once per page; by default unchanged."""
        return request

    def transform(self, poll: Poll, response: Response) -> Output:
        """Turns one response into records, and optionally a new state and a next page."""
        raise NotImplementedError("override transform in your Plugin subclass")


def export(plugin_class: type) -> type:
    """The class componentize-py exports, calling `plugin_class`; bind it as `WitWorld`."""
    plugin = plugin_class()

    def call(method, *args):
        try:
            return method(*args)
        except Rejected as error:
            raise Err(Error_Rejected(str(error)))
        except Retry as error:
            raise Err(Error_Retry(str(error)))

    class WitWorld:
        def prepare(self, poll: Poll, request: Request) -> Request:
            return call(plugin.prepare, poll, request)

        def transform(self, poll: Poll, response: Response) -> Output:
            return call(plugin.transform, poll, response)

    return WitWorld


# Settings, headers and state.


def setting(poll: Poll, name: str, default: Optional[str] = None) -> Optional[str]:
    """The value of the project's plugin setting `name`, or `default` when it is not set."""
    for key, value in poll.settings:
        if key == name:
            return value
    return default


def header(response: Response, name: str) -> Optional[str]:
    """The value of the first header called `name` (compared case-insensitively), if any."""
    wanted = name.lower()
    for key, value in response.headers:
        if key.lower() == wanted:
            return value
    return None


def state_json(poll: Poll) -> Any:
    """The stored state parsed as JSON, or None before the first successful run.

    A state that does not parse raises `Rejected`: another version of the plugin wrote it, and
    the project's state must be reset.
    """
    if poll.state is None:
        return None
    try:
        return parse_json(poll.state, "stored state")
    except Rejected as error:
        raise Rejected(f"{error}; reset the project's state if the plugin's state format changed")


def json_state(value: Any) -> bytes:
    """`value` as compact JSON bytes, for `output(..., state=...)`; read back by `state_json`."""
    return to_json(value, "state")


# JSON.


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(data: bytes, what: str = "input") -> Any:
    """`data` parsed as strict JSON (no NaN or Infinity), or `Rejected` naming `what`."""
    try:
        return json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as error:
        raise Rejected(f"{what} is not valid UTF-8: {error}")
    except ValueError as error:
        raise Rejected(f"{what} is not valid JSON: {error}")


def body_json(response: Response) -> Any:
    """The response body parsed as JSON; malformed JSON raises `Rejected` with line and column."""
    return parse_json(response.body, "response body")


def to_json(value: Any, what: str = "value") -> bytes:
    """`value` as compact UTF-8 JSON with sorted keys, as the Rust SDK writes it."""
    try:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise Rejected(f"{what} cannot be serialized as JSON: {error}")
    return text.encode("utf-8")


# Records, outputs and requests.


def record(data: bytes, partition_key: str, explicit_hash_key: Optional[str] = None) -> Record:
    """A record with the given payload (bytes or text) and partition key."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return Record(bytes(data), partition_key, explicit_hash_key)


def json_record(value: Any, partition_key: str) -> Record:
    """A record whose payload is `value` as compact JSON."""
    return record(to_json(value, "record"), partition_key)


def output(records: List[Record], state: Optional[bytes] = None, next: Optional[Request] = None) -> Output:
    """What `transform` returns: records, a new state (None keeps it) and a next page (None ends)."""
    return Output(list(records), state, next)


def get(url: str) -> Request:
    """A GET request to `url` with no headers and no body, for `output(..., next=...)`."""
    return Request("GET", url, [], None)


def _encode(text: str) -> str:
    # Everything but RFC 3986's unreserved characters, so `&`, `=`, `+` and `#` survive.
    unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(b) if chr(b) in unreserved else f"%{b:02X}" for b in text.encode("utf-8"))


def _decode(text: str) -> str:
    out = bytearray()
    data = text.encode("utf-8")
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == ord("+"):
            out.append(ord(" "))
        elif byte == ord("%") and i + 3 <= len(data) and all(chr(c) in "0123456789abcdefABCDEF" for c in data[i + 1 : i + 3]):
            out.append(int(data[i + 1 : i + 3], 16))
            i += 2
        else:
            out.append(byte)
        i += 1
    return out.decode("utf-8", errors="replace")


def with_query(request: Request, name: str, value: str) -> Request:
    """`request` with the query parameter `name` set to `value`, both percent-encoded.

    The first parameter of that name is replaced in place and further ones are removed;
    otherwise the parameter is appended. The path and any `#fragment` are kept.
    """
    url, _, fragment = request.url.partition("#")
    base, _, query = url.partition("?")
    pair = f"{_encode(name)}={_encode(value)}"
    pairs, replaced = [], False
    for part in filter(None, query.split("&")):
        if _decode(part.split("=", 1)[0]) != name:
            pairs.append(part)
        elif not replaced:
            pairs.append(pair)
            replaced = True
    if not replaced:
        pairs.append(pair)
    fragment = f"#{fragment}" if "#" in request.url else ""
    return Request(request.method, f"{base}?{'&'.join(pairs)}{fragment}", list(request.headers), request.body)


# The run's log: lines are truncated at 4 KiB and a call keeps at most 1,000 lines and 64 KiB.


def log(level: str, message: str) -> None:
    """Appends `message` to the run's log at `level`: trace, debug, info, warn or error."""
    if _NATIVE:
        print(f"{level}: {message}", file=sys.stderr)
    else:
        _host.log(_host.Level[level.upper()], message)


def trace(message: str) -> None:
    log("trace", message)


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)
