#!/usr/bin/env python3
"""robust.py — 1,000 malformed or hostile requests against a running `llmrt serve` (loopback
only, bounded in count and time): bad JSON, wrong types, huge max_tokens, 10 MB bodies (sized and
chunked), huge headers, slow senders (the server's --timeout must close them), abrupt
disconnects mid-stream, 200 concurrent connections; then a well-formed request must still give
the greedy reference text. Standard library only.
Usage: robust.py URL REFERENCE_TEXT (greedy, 12 tokens after "And God said", temperature 0)"""

import json
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse

URL, REF = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(URL)
HOST, PORT = u.hostname, u.port
rng = random.Random(1234)
lock = threading.Lock()
counts = {"requests": 0}
failures = []


def fail(msg):
    with lock:
        failures.append(msg)


def count():
    with lock:
        counts["requests"] += 1


def connect(timeout=30):
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    return s


def http(method, path, body=b"", headers=None, timeout=60):
    """One request on a fresh connection; returns (status, body bytes)."""
    count()
    hdr = {"Host": f"{HOST}:{PORT}", "Connection": "close", "Content-Length": str(len(body))}
    hdr.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdr.items())
    s = connect(timeout)
    data = b""
    try:
        try:
            s.sendall(head.encode() + b"\r\n" + body)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server answered (and closed) before taking the whole body
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    if not data.startswith(b"HTTP/1."):
        return None, data
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[-1]


def post(path, obj_or_bytes, **kw):
    body = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return http("POST", path, body, {"Content-Type": "application/json"}, **kw)


def expect(status_want, got, what):
    status, body = got
    if status != status_want:
        fail(f"{what}: status {status}, want {status_want}: {body[:200]!r}")
        return None
    return body


def bad_json():  # 200
    valid = json.dumps({"prompt": "And God said", "max_tokens": 3}).encode()
    for i in range(200):
        kind = i % 4
        if kind == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif kind == 1:
            body = valid[: rng.randrange(1, len(valid) - 1)]
        elif kind == 2:
            body = b"[" * rng.choice([10, 3000, 100000]) + b"]" * 5
        else:
            body = valid.replace(b"And", b"\xc3\x28")  # invalid UTF-8
        path = rng.choice(["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"])
        status, out = post(path, body)
        if status != 400:
            fail(f"bad JSON {body[:40]!r} on {path}: {status} {out[:200]!r}")
        elif b'"error"' not in out:
            fail(f"bad JSON: no error object: {out[:200]!r}")


def wrong_types():  # 200
    values = [None, True, -1, 0, 2**40, -2**70, 1.5, 1e308, "x", "", [], [1, "a"], {}, {"a": 1},
              [[]], "\u0000", [-5], [2**31]]
    fields = ["prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
              "n", "stream", "stream_options", "stop", "seed", "logprobs", "top_logprobs",
              "presence_penalty", "frequency_penalty", "logit_bias", "echo", "user", "top_k",
              "min_p", "repetition_penalty", "ignore_eos", "min_tokens", "stop_token_ids",
              "skip_special_tokens", "tools", "tool_choice", "response_format", "model",
              "chat_template_kwargs", "add_generation_prompt", "nonsense"]
    for i in range(200):
        chat = i % 2 == 1
        body = {"messages": [{"role": "user", "content": "Hi"}]} if chat else {"prompt": "And"}
        body["max_tokens"] = 2
        f = rng.choice(fields)
        body[f] = rng.choice(values)
        status, out = post("/v1/chat/completions" if chat else "/v1/completions", body)
        if status not in (200, 400, 404):
            fail(f"wrong type {f}={body[f]!r}: status {status} {out[:200]!r}")
        elif status in (400, 404):
            try:
                err = json.loads(out)["error"]
                assert isinstance(err["message"], str) and err["type"]
            except Exception:
                fail(f"wrong type {f}: not an OpenAI error object: {out[:200]!r}")


def huge_max_tokens():  # 50
    for i in range(50):
        mt = rng.choice([513, 10**6, 2**31 - 1])
        status, out = post("/v1/completions", {"prompt": "And God said", "max_tokens": mt})
        if status != 400 or b"maximum context length" not in out:
            fail(f"max_tokens {mt}: {status} {out[:200]!r}")
    for i in range(10):  # prompts longer than the context, and far too many choices
        status, out = post("/v1/completions", {"prompt": [5] * 600, "max_tokens": 1})
        if status != 400:
            fail(f"600-token prompt: {status} {out[:200]!r}")
    status, out = post("/v1/completions", {"prompt": ["a"] * 100, "n": 128})
    if status != 400:
        fail(f"12800 choices: {status} {out[:200]!r}")


def big_bodies():  # 12
    big = b'{"prompt": "' + b"a" * (10 << 20) + b'"}'
    for i in range(5):  # the whole body sent: a 413, or a reset once the server refused it
        status, _ = post("/v1/completions", big)
        if status not in (413, None):
            fail(f"10 MB body: status {status}")
    for i in range(5):  # the size announced, the body held back: the 413 comes at once
        count()
        s = connect()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"Content-Type: application/json\r\n\r\n" % len(big) + big[:1000])
        data = s.recv(4096)
        s.close()
        if not data.startswith(b"HTTP/1.1 413"):
            fail(f"10 MB announced: {data[:100]!r}")
    for i in range(2):  # chunked: the size is not announced
        count()
        s = connect()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/json\r\nConnection: close\r\n\r\n")
        chunk = b"a" * (1 << 20)
        try:
            for _ in range(10):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            data = s.recv(4096)
            if not data.startswith(b"HTTP/1.1 413"):
                fail(f"chunked 10 MB: {data[:100]!r}")
        except (ConnectionResetError, BrokenPipeError):
            pass  # closing on an oversized body is fine too
        s.close()
    # a header block larger than the server's connection memory
    status, _ = http("GET", "/health", b"", {"X-Big": "b" * 100000})
    count()
    if status is not None and status < 400:
        fail(f"100 KB header: {status}")


def slow_senders():  # 20, concurrently: each must be closed by the server's timeout
    socks = []
    for i in range(20):
        count()
        s = connect(timeout=15)
        part = [b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le",
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro",
                b"GET /hea"][i % 3]
        s.sendall(part)
        socks.append(s)
    t0 = time.time()
    for s in socks:
        try:
            while s.recv(4096):
                pass
        except (socket.timeout, TimeoutError):
            fail("a slow sender was not closed within 15 s")
        except ConnectionResetError:
            pass
        s.close()
    if time.time() - t0 > 12:
        fail(f"slow senders held for {time.time() - t0:.1f} s")


def disconnects():  # 100 streams cut mid-way, 20 non-stream requests abandoned
    def one(i):
        count()
        s = connect()
        body = json.dumps({"prompt": "And God said", "max_tokens": 300, "ignore_eos": True,
                           "stream": i % 2 == 0, "temperature": 1}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        if i % 2 == 0:
            s.recv(rng.choice([1, 100, 2000]))
        if i % 3 == 0:  # reset instead of a clean close
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(120)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def concurrent_200():  # 200 connections at once, every answer right
    results = [None] * 200

    def one(i):
        status, out = post("/v1/completions",
                           {"prompt": "And God said", "max_tokens": 12, "temperature": 0},
                           timeout=120)
        results[i] = (status, out)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (status, out) in enumerate(results):
        if status != 200:
            fail(f"concurrent {i}: {status} {out[:200]!r}")
        elif json.loads(out)["choices"][0]["text"] != REF:
            fail(f"concurrent {i}: wrong text {out[:200]!r}")


def misc():  # the rest up to 1,000: odd paths, methods, versions
    n = 1000 - counts["requests"]
    for i in range(max(n, 0)):
        k = i % 6
        if k == 0:
            got = http("GET", "/" + "x" * rng.randrange(1, 3000))
            if got[0] not in (404, 414, 431, 400, None):
                fail(f"odd path: {got[0]}")
        elif k == 1:
            got = http(rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS"]), "/v1/completions")
            if got[0] not in (405, 400):
                fail(f"odd method: {got[0]}")
        elif k == 2:
            got = post("/v1/completions", {"prompt": "x", "max_tokens": 1, "logit_bias": {str(j): 1 for j in range(5000)}})
            if got[0] != 400:
                fail(f"logit_bias outside the vocabulary: {got[0]}")
        elif k == 3:
            got = post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 5000}], "max_tokens": 1})
            if got[0] != 400:
                fail(f"chat past the context: {got[0]}")
        elif k == 4:
            got = post("/detokenize", {"tokens": [rng.randrange(4096) for _ in range(50)]})
            if got[0] != 200:
                fail(f"detokenize: {got[0]} {got[1][:100]!r}")
        else:
            count()
            s = connect()
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(100))  # a TLS hello
            s.close()  # (the server waits for a request line; its timeout ends it)


t0 = time.time()
for step in (bad_json, wrong_types, huge_max_tokens, big_bodies, slow_senders, disconnects,
             concurrent_200, misc):
    t = time.time()
    step()
    print(f"  {step.__name__}: {time.time() - t:.1f} s, {counts['requests']} requests so far")
time.sleep(0.5)
status, out = post("/v1/completions", {"prompt": "And God said", "max_tokens": 12, "temperature": 0})
if status != 200 or json.loads(out)["choices"][0]["text"] != REF:
    fail(f"the well-formed request afterwards: {status} {out[:300]!r}")
status, _ = http("GET", "/health")
if status != 200:
    fail(f"health afterwards: {status}")
for f in failures[:30]:
    print("FAIL", f)
print(f"{counts['requests']} hostile requests in {time.time() - t0:.1f} s")
print(f"{1 if not failures else 0} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
