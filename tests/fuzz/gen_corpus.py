#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/.

    /usr/bin/python3 tests/fuzz/gen_corpus.py

Seeds are small, named after what they exercise, and regenerated from this
file (it is the source of truth for corpus/zmtp, corpus/relay, corpus/cidr,
corpus/msgpack_scan and the hand-written part of corpus/config); it overwrites its own seeds and leaves
the rest alone. scripts/fuzz.sh --merge adds what the fuzzer found on top,
under hash names.

fuzz_zmtp input layout (see fuzz_zmtp.c): ctl byte, split byte (low 4 bits:
number of cut points, high 4 bits: stride - 1), 2 bytes per cut point, then
the stream one peer sends.

fuzz_msgpack_scan input layout: one byte seeding the chunking, then the frame.
"""

import pickle
import shutil
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = HERE / "corpus"

SIG = b"\xff" + b"\x00" * 8 + b"\x7f"


def greeting(major=3, minor=1, mech=b"NULL", as_server=0, filler=b""):
    return SIG + bytes([major, minor]) + mech.ljust(20, b"\x00") + bytes([as_server]) + \
        filler.ljust(31, b"\x00")


def frame(body, more=False, cmd=False, long=None, flags=None, size=None):
    declared = len(body) if size is None else size
    if long is None:
        long = declared > 255
    f = (1 if more else 0) | (2 if long else 0) | (4 if cmd else 0)
    if flags is not None:
        f = flags
    if long:
        return bytes([f]) + struct.pack(">Q", declared) + body
    return bytes([f, declared]) + body


def props(*pairs):
    return b"".join(bytes([len(n)]) + n + struct.pack(">I", len(v)) + v for n, v in pairs)


def ready(socket_type=b"PUSH", extra=()):
    pairs = ([(b"Socket-Type", socket_type)] if socket_type is not None else []) + list(extra)
    return frame(b"\x05READY" + props(*pairs), cmd=True)


def error(reason=b"Invalid socket type"):
    return frame(b"\x05ERROR" + bytes([len(reason)]) + reason, cmd=True)


def cmd(name, rest=b""):
    return frame(bytes([len(name)]) + name + rest, cmd=True)


# ctl bits: 0 role (0 up, 1 down), 1-2 limits, 3-4 mechanisms, 5-7 socket types
UP, DOWN = 0, 1
LIM_NONE, LIM_ZERO, LIM_255, LIM_64K = 0 << 1, 1 << 1, 2 << 1, 3 << 1
MECH_NULL, MECH_TWO, MECH_NONE, MECH_CURVE = 0 << 3, 1 << 3, 2 << 3, 3 << 3
ST_ANY, ST_PUSH, ST_DEALER_REQ, ST_SUB = 0 << 5, 1 << 5, 2 << 5, 3 << 5


def zseed(ctl, stream, cuts=(), stride=1):
    assert len(cuts) <= 15 and 1 <= stride <= 16
    head = bytes([ctl, ((stride - 1) << 4) | len(cuts)])
    return head + b"".join(struct.pack(">H", c) for c in cuts) + stream


def zmtp_seeds():
    g = greeting()
    hs_push = g + ready(b"PUSH")
    s = {}
    s["up_push_json"] = zseed(UP | ST_PUSH, hs_push + frame(b'{"i":1}') +
                              frame(b"a", more=True) + frame(b"") + frame(b"b" * 300),
                              cuts=(1, 10, 11, 12, 64, 65, 66, 90), stride=3)
    s["up_dealer_identity"] = zseed(UP | ST_DEALER_REQ, g + ready(b"DEALER", [(b"Identity", b"me")]) +
                                    frame(b"", more=True) + frame(b"payload"), cuts=(32, 70))
    s["up_req_commands"] = zseed(UP, hs_push + cmd(b"PING", b"\x00\x0actx") + cmd(b"PONG", b"ctx") +
                                 frame(b"x", more=True) + cmd(b"SUBSCRIBE", b"topic") +
                                 frame(b"y") + cmd(b"CANCEL", b"topic"), cuts=(75, 76, 77))
    s["up_long_frames"] = zseed(UP | LIM_64K, hs_push + frame(b"L" * 10, long=True) +
                                frame(b"M" * 1000, more=True) + frame(b"N" * 2000), stride=16)
    s["up_too_large_2_62"] = zseed(UP | LIM_64K, hs_push + b"\x02" + struct.pack(">Q", 1 << 62),
                                   cuts=(80, 81, 85))
    s["up_too_large_short"] = zseed(UP | LIM_255, hs_push + frame(b"z" * 200) + frame(b"w" * 300))
    s["up_message_too_large"] = zseed(UP | LIM_255, hs_push + frame(b"a" * 200, more=True) +
                                      frame(b"b" * 200))
    s["up_zero_limit"] = zseed(UP | LIM_ZERO, hs_push + frame(b"") + frame(b"x"))
    s["up_reserved_flags"] = zseed(UP, hs_push + frame(b"x", flags=0x08))
    s["up_command_more"] = zseed(UP, hs_push + frame(b"\x04PING\x00\x00", flags=0x05))
    s["up_ready_as_data"] = zseed(UP, g + frame(b"\x05READY" + props((b"Socket-Type", b"PUSH"))))
    s["up_socket_type_refused"] = zseed(UP | ST_SUB, g + ready(b"PUSH") + frame(b"x"))
    s["up_no_socket_type"] = zseed(UP | ST_PUSH, g + ready(None) + frame(b"x"))
    s["up_dup_props"] = zseed(UP, g + ready(b"PUSH", [(b"socket-type", b"PUSH")]))
    s["up_misspelled"] = zseed(UP, g + ready(None, [(b"IDENTITY", b"x")]))
    s["up_many_props"] = zseed(UP, g + ready(b"PUSH", [(b"X%d" % i, b"v") for i in range(33)]))
    s["up_bad_ping"] = zseed(UP, hs_push + cmd(b"PING", b"\x00"))
    s["up_unknown_cmd"] = zseed(UP, hs_push + cmd(b"HELLO"))
    s["up_big_command"] = zseed(UP, hs_push + frame(b"\x09SUBSCRIBE" + b"t" * 9000, cmd=True))
    s["up_plain_mech"] = zseed(UP | MECH_TWO, greeting(mech=b"PLAIN") + ready(b"PUSH"))
    s["up_curve_refused"] = zseed(UP | MECH_CURVE, greeting(mech=b"NULL"))
    s["up_no_mechs"] = zseed(UP | MECH_NONE, greeting())
    s["up_zmtp2"] = zseed(UP, SIG + b"\x01\x05" + frame(b""))
    s["up_zmtp1"] = zseed(UP, b"\x01\x00" + b"x" * 20)
    s["up_minor0_server"] = zseed(UP, greeting(minor=0, as_server=1) + ready(b"PUSH"))
    s["up_bad_filler"] = zseed(UP, greeting(filler=b"\x00" * 30 + b"\x01"))
    s["up_long_handshake"] = zseed(UP, g + frame(b"\x05READY" + props((b"Socket-Type", b"PUSH")),
                                                 cmd=True, long=True) + frame(b"ok"))
    s["up_handshake_too_big"] = zseed(UP, g + frame(b"\x05READY" + props((b"X", b"v" * 8200)),
                                                    cmd=True))
    s["down_pull_ready"] = zseed(DOWN, g + ready(b"PULL") + cmd(b"PING", b"\x00\x01") +
                                 frame(b"reply", more=True) + frame(b"end"), cuts=(5, 64, 80))
    s["down_error"] = zseed(DOWN, g + error())
    s["down_error_then_bytes"] = zseed(DOWN, g + error(b"x") + b"\x00")
    s["down_error_malformed"] = zseed(DOWN, g + frame(b"\x05ERROR\x05ab", cmd=True))
    s["down_router_identity"] = zseed(DOWN | ST_PUSH, g + ready(b"ROUTER", [(b"Identity", b"")]) +
                                      frame(b"big" * 100, more=True) + frame(b"" )*3)
    s["down_pub_subscribe"] = zseed(DOWN, g + ready(b"XPUB") + frame(b"\x01topic") +
                                    cmd(b"SUBSCRIBE", b"t"))
    return s


# fuzz_relay ctl bits: 0 direction (0 client->worker), 1 log-only, 2 close on
# violation, 3 trusted peer, 4-5 limits, 6 socket_types = [ "PUSH" ]
R_UP, R_DOWN, R_LOGONLY, R_CLOSE, R_TRUSTED = 0, 1, 2, 4, 8
R_LIM_DEF, R_LIM_ONE, R_LIM_255, R_LIM_64K = 0 << 4, 1 << 4, 2 << 4, 3 << 4
R_ST_PUSH = 64


def relay_seeds():
    g = greeting()
    hs = g + ready(b"PUSH")
    evil = [pickle.dumps(print, protocol=p) for p in range(6)]
    benign = pickle.dumps({"a": [1, 2.5, "x"]}, protocol=4)  # no import: clean
    js = b'{"prompt":"hello","max_tokens":16}'
    s = {}
    s["up_clean_stream"] = zseed(R_UP | R_ST_PUSH, hs + frame(js) + frame(b"\x93\x01\x02\x03") +
                                 frame(b"", more=True) + frame(js), cuts=(3, 64, 70, 71, 80), stride=2)
    for p_, e in enumerate(evil):
        s[f"up_pickle_p{p_}"] = zseed(R_UP, hs + frame(e) + frame(js), cuts=(66, 67, 68, 90))
    s["up_pickle_in_multipart"] = zseed(R_UP, hs + frame(js, more=True) + frame(evil[4], more=True) +
                                        frame(js) + frame(js), cuts=(70, 100, 101))
    s["up_pickle_close"] = zseed(R_UP | R_CLOSE, hs + frame(js, more=True) + frame(evil[2]) + frame(js))
    s["up_pickle_logonly"] = zseed(R_UP | R_LOGONLY, hs + frame(evil[5], more=True) + frame(js))
    s["up_pickle_trusted"] = zseed(R_UP | R_TRUSTED, hs + frame(evil[0]) + frame(benign))
    s["up_benign_pickle"] = zseed(R_UP, hs + frame(benign) + frame(benign, more=True) + frame(b""))
    s["up_commands_mid_message"] = zseed(R_UP, hs + frame(js, more=True) + cmd(b"PING", b"\x00\x01") +
                                         frame(js, more=True) + cmd(b"SUBSCRIBE", b"t") + frame(js))
    s["up_long_pickle"] = zseed(R_UP | R_LIM_64K, hs + frame(b"\x80\x04" + b"N" * 600 + evil[4][2:],
                                                            long=True) + frame(js), stride=7)
    s["up_message_limit"] = zseed(R_UP | R_LIM_255, hs + frame(b"a" * 200, more=True) + frame(b"b" * 200))
    s["up_frame_limit_one"] = zseed(R_UP | R_LIM_ONE, hs + frame(b"x") + frame(b"xy"))
    s["up_socket_type_bad"] = zseed(R_UP | R_ST_PUSH, g + ready(b"DEALER") + frame(js))
    s["up_error_then_bytes"] = zseed(R_UP, g + error(b"no") + b"\x00\x00")
    s["down_reply_stream"] = zseed(R_DOWN, g + ready(b"PULL") + frame(evil[4]) + frame(js, more=True) +
                                   frame(js), cuts=(10, 11, 64, 65))
    s["down_error"] = zseed(R_DOWN, g + error())
    # Found by fuzz_relay: a clean message and a violation in the same read
    # (here an empty command): the message must leave as it does when the
    # violation comes in a later read.
    s["bug_unflushed_before_bad_command"] = zseed(R_UP, hs + frame(b"") + frame(b"", cmd=True))
    return s


def cidr_seeds():
    rules = ["10.0.0.0/8", "127.0.0.1", "0.0.0.0/0", "::/0", "::1", "::1/128", "fe80::/10",
             "::ffff:10.0.0.0/104", "::ffff:0:0/96", "192.168.1.7/32", "2001:db8::/32",
             "10.0.0.1/8", "10.0.0.0/08", "10.0.0.0/33", "::/129", "1.2.3.4/+8", "010.0.0.1",
             "10.1", "1.2.3.4 ", "[::1]", "::ffff:1.2.3.4", "1.2.3.0/24", "ffff::/1", "8000::/1"]
    peers = [b"\x00" * 10 + b"\xff\xff" + bytes([10, 1, 2, 3]), b"\x00" * 15 + b"\x01",
             bytes([0xfe, 0x80]) + b"\x00" * 13 + b"\x01", b"\x20\x01\x0d\xb8" + b"\x00" * 12]
    out = {}
    for i, r in enumerate(rules):
        out[f"rule{i:02d}"] = r.encode() + b"\x00" + peers[i % len(peers)]
    return out


# Configs with the keys the unit configs do not use (yet).
EXTRA_CONFIGS = {
    "extra_all_keys.conf": """\
mode = "enforce";
log = { level = "warn"; format = "json"; };
user = "zmtpfw";
drain_timeout_ms = 2500;
max_memory = 8589934592L;
reload_closes_disallowed = true;
metrics = { listen = "127.0.0.1:9464"; probe_upstream = false; };
routes = (
  {
    name = "a";
    listen = "127.0.0.1:15555";
    upstream = "unix:/run/zmtpfw/worker.sock";
    allow = [ "127.0.0.0/8", "::1" ];
    max_connections_per_peer = 4;
    idle_timeout_ms = 60000;
    connect_timeout_ms = 250;
    max_scan_bytes = 1073741824;
  },
  {
    name = "b";
    listen = "[::1]:15556";
    upstream = "[::1]:5556";
    allow = ( );
    idle_timeout_ms = 0;
  }
);
""",
    "extra_metrics_clash.conf": """\
metrics = { listen = "127.0.0.1:15555"; };
routes = ( { listen = "127.0.0.1:15555"; upstream = "127.0.0.1:5555"; allow = [ ]; } );
""",
    "extra_idle_small.conf": """\
routes = ( { listen = "*:1"; upstream = "localhost:2"; allow = [ ]; idle_timeout_ms = 999; } );
""",
    "extra_prescan.conf": """\
/* block comment
   over lines */ routes = ( { listen = "*:1"; // trailing
  upstream = "localhost:2"; allow = [ "::/0" ]; max_frame_size = 0x7fffffff;
  max_message_size = 4611686018427387904L; handshake_timeout_ms = 1e3; } );
""",
}


def msgpack_seeds():
    """vLLM and SGLang frames, every type byte family, and the edges the
    walker decides early (lengths past the end, depth, trailing bytes)."""
    pk = pickle.dumps({"a": 1}, protocol=5)
    big = bytes(range(256)) * 2
    frames = {
        "vllm_ext8_pickle": b"\x93\xa3gen\x01\xc7" + bytes([len(pk)]) + b"\x01" + pk,
        "vllm_ext16_cloudpickle": b"\xc8" + struct.pack(">H", len(pk)) + b"\x02" + pk,
        "vllm_ext32": b"\xc9" + struct.pack(">I", len(pk)) + b"\x01" + pk,
        "vllm_fixext": b"\x95\xd4\x01\x2e\xd5\x02\x80\x05\xd6\x01...."
                       b"\xd7\x03........\xd8\xff" + b"." * 16,
        "sglang_pickle_wrapper": b"\x92\xadPickleWrapper\xc4" + bytes([len(pk)]) + pk,
        "sglang_wrapper_bin16_in_map": b"\x82\xa3req\x92\xadPickleWrapper\xc5"
                                       + struct.pack(">H", len(big)) + big + b"\xa1n\x07",
        "scalars": b"\xdc\x00\x11\xc0\xc2\xc3\x00\x7f\xe0\xff\xcc\x01\xcd\x00\x01\xce\x00\x00\x00\x01"
                   b"\xcf" + b"\x00" * 8 + b"\xd0\x80\xd1\x00\x01\xd2\x00\x00\x00\x01\xd3"
                   + b"\x00" * 8 + b"\xca\x00\x00\x00\x00\xcb" + b"\x00" * 8,
        "strings": b"\x94\xa3abc\xd9\x01a\xda\x00\x01a\xdb\x00\x00\x00\x01\xff",
        "maps": b"\x84\xa1a\x80\xc4\x01k\x90\xde\x00\x01\x01\x02\xdf\x00\x00\x00\x00\x91\x01\xc0",
        "arrays": b"\xdc\x00\x02\xdd\x00\x00\x00\x01\x90\x90",
        "depth_64": b"\x91" * 64 + b"\x01",
        "depth_65": b"\x91" * 65 + b"\x01",
        "trailing": b"\xc4\x01\xaa\x00",
        "length_past_end": b"\x92\xc4\x05\x00",
        "ext8_len_before_type": b"\xc7\x05\x01",
        "c1": b"\x92\x01\xc1",
        "pickle_not_msgpack": pk,
        "empty": b"",
    }
    return {name: bytes([i * 37 % 256]) + f for i, (name, f) in enumerate(frames.items())}


def main():
    z = CORPUS / "zmtp"
    z.mkdir(parents=True, exist_ok=True)
    for name, data in zmtp_seeds().items():
        (z / name).write_bytes(data)
    c = CORPUS / "cidr"
    c.mkdir(parents=True, exist_ok=True)
    for name, data in cidr_seeds().items():
        (c / name).write_bytes(data)
    r = CORPUS / "relay"
    r.mkdir(parents=True, exist_ok=True)
    for name, data in relay_seeds().items():
        (r / name).write_bytes(data)
    mp = CORPUS / "msgpack_scan"
    mp.mkdir(parents=True, exist_ok=True)
    for name, data in msgpack_seeds().items():
        (mp / name).write_bytes(data)
    cf = CORPUS / "config"
    cf.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "conf" / "zmtpfw.conf", cf / "zmtpfw.conf")
    for p in sorted((REPO / "tests" / "unit" / "configs").glob("*.conf")):
        shutil.copy(p, cf / p.name)
    for name, text in EXTRA_CONFIGS.items():
        (cf / name).write_text(text)
    print(f"wrote {len(list(z.iterdir()))} zmtp, {len(list(r.iterdir()))} relay, "
          f"{len(list(c.iterdir()))} cidr, {len(list(mp.iterdir()))} msgpack_scan, "
          f"{len(list(cf.iterdir()))} config seeds")


if __name__ == "__main__":
    main()
