"""Raw-socket ZMTP 3.1 client helpers for attacks a real libzmq peer never sends.

The handshake plays the order libzmq itself uses (see shared/ZMTP.md): send
the 10-byte signature, read the peer's signature, send the major version,
read the peer's, send the rest of the greeting, read the rest, send READY,
wait for the peer's READY, and only then send data. A client that pipelines
data behind its READY tests libzmq's refusal, not zmtpfw.
"""

import socket
import struct
import time

SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
MECH_NULL = b"NULL" + b"\x00" * 16

FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04


class Closed(Exception):
    """The peer closed (or reset) the connection."""


def greeting_rest(minor=1, mechanism=MECH_NULL, as_server=0):
    """Bytes 11..63 of a 3.x greeting (after signature and major version)."""
    assert len(mechanism) == 20
    return bytes([minor]) + mechanism + bytes([as_server]) + b"\x00" * 31


def full_greeting(major=3, minor=1):
    return SIGNATURE + bytes([major]) + greeting_rest(minor)


def encode_frame(body, more=False, command=False, long=None, flags=None, size=None):
    """One ZMTP frame. long=None picks the short form when the body fits.

    flags overrides the computed flags byte entirely (reserved bits, lies);
    size overrides the declared size (the body is still appended as given).
    """
    declared = len(body) if size is None else size
    if long is None:
        long = declared > 255
    f = (FLAG_MORE if more else 0) | (FLAG_LONG if long else 0) | (FLAG_COMMAND if command else 0)
    if flags is not None:
        f = flags
    if long:
        return bytes([f]) + struct.pack(">Q", declared) + body
    return bytes([f, declared]) + body


def encode_message(frames, **kw):
    out = b""
    for i, fr in enumerate(frames):
        out += encode_frame(fr, more=i < len(frames) - 1, **kw)
    return out


def ready_body(socket_type="PUSH", extra=()):
    """READY command body: \\x05READY then name/value properties."""
    body = b"\x05READY"
    props = []
    if socket_type is not None:
        props.append((b"Socket-Type", socket_type.encode()))
    props.extend(extra)
    for name, value in props:
        body += bytes([len(name)]) + name + struct.pack(">I", len(value)) + value
    return body


def ready_command(socket_type="PUSH", extra=()):
    return encode_frame(ready_body(socket_type, extra), command=True)


class RawClient:
    """A TCP connection speaking ZMTP by hand. Every read is bounded by timeout."""

    def __init__(self, host, port, source=None, timeout=5.0):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.local = self.sock.getsockname()
        self.peer_greeting = b""
        self.peer_ready = None

    # -- low level -------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, chunk=1, delay=0.001):
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i:i + chunk])
            if delay:
                time.sleep(delay)

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out reading {n} bytes (got {len(buf)}: {buf[:64]!r})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(f"reset after {len(buf)} of {n} bytes: {e}") from None
            if not chunk:
                raise Closed(f"EOF after {len(buf)} of {n} bytes: {buf[:64]!r}")
            buf += chunk
        return buf

    def recv_frame(self, timeout=None):
        """Returns (flags, body)."""
        flags = self.recv_exact(1, timeout)[0]
        if flags & FLAG_LONG:
            size = struct.unpack(">Q", self.recv_exact(8, timeout))[0]
        else:
            size = self.recv_exact(1, timeout)[0]
        return flags, self.recv_exact(size, timeout) if size else b""

    def recv_message(self, timeout=None):
        frames = []
        while True:
            flags, body = self.recv_frame(timeout)
            if flags & FLAG_COMMAND:
                continue  # PING etc. are not part of a message
            frames.append(body)
            if not flags & FLAG_MORE:
                return frames

    def wait_closed(self, timeout=5.0):
        """True when the peer closes within timeout (data read meanwhile is discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True

    def try_send(self, data):
        """Send, tolerating a peer that already closed. Returns False if it had."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- handshake -------------------------------------------------------
    def greet(self, major=3, minor=1, mechanism=MECH_NULL, slow=False):
        """Greeting in libzmq's order, reading the peer's parts in between."""
        send = self.send_slowly if slow else self.send
        send(SIGNATURE)
        sig = self.recv_exact(10)
        assert sig[0] == 0xFF and sig[9] & 1, f"peer signature {sig!r}"
        send(bytes([major]))
        pmajor = self.recv_exact(1)
        send(greeting_rest(minor, mechanism))
        rest = self.recv_exact(53)
        self.peer_greeting = sig + pmajor + rest
        return self.peer_greeting

    def send_ready(self, socket_type="PUSH", extra=(), slow=False):
        data = ready_command(socket_type, extra)
        (self.send_slowly if slow else self.send)(data)

    def recv_ready(self, timeout=None):
        flags, body = self.recv_frame(timeout)
        assert flags & FLAG_COMMAND, f"peer's first frame is not a command: flags={flags:#x} {body[:32]!r}"
        assert body.startswith(b"\x05READY"), f"peer's first command is not READY: {body[:32]!r}"
        self.peer_ready = body
        return body

    def handshake(self, socket_type="PUSH", slow=False):
        self.greet(slow=slow)
        self.send_ready(socket_type, slow=slow)
        return self.recv_ready()
