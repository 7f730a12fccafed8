#!/usr/bin/env python3
"""openai_client.py — drives a running `llmrt serve` (the demo model) with the official `openai`
client: completions, chat, streaming, n > 1, stop strings, logprobs, seeds, echo, token-id
prompts, errors, and continuous batching (16 concurrent greedy requests equal their one-at-a-time
outputs). Usage: openai_client.py URL API_KEY REFERENCE_TEXT
REFERENCE_TEXT: `llmrt run` greedy text of 24 tokens after "And God said" (the same model).
Prints "N passed, N failed"; exits 1 on any failure."""

import concurrent.futures as cf
import json
import sys
import urllib.request

try:
    import openai
except ImportError:
    print("FAIL the `openai` package is not installed for", sys.executable,
          "(pip install openai; or set LLMRT_TEST_PYTHON to a python that has it)")
    sys.exit(1)

URL, KEY, REF = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = "demo-llama"
client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=120)
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
    except Exception as e:  # noqa: BLE001 — every failure is reported the same way
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def post(path, body):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def cmpl(**kw):
    kw.setdefault("model", MODEL)
    return client.completions.create(**kw)


def chat(**kw):
    kw.setdefault("model", MODEL)
    return client.chat.completions.create(**kw)


def test_models():
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL], ids


def test_greedy_matches_run():
    r = cmpl(prompt="And God said", max_tokens=24, temperature=0)
    c = r.choices[0]
    assert c.text == REF, (c.text, REF)
    assert c.finish_reason == "length" and c.index == 0
    assert r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 24
    assert r.usage.total_tokens == 28
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == MODEL


def test_stream_equals_whole():
    chunks = list(cmpl(prompt="And God said", max_tokens=24, temperature=0, stream=True,
                       stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == REF, (text, REF)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"], finals
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
    assert all(c.usage is None for c in chunks[:-1])


def test_chat():
    msgs = [{"role": "system", "content": "You are the LORD."},
            {"role": "user", "content": [{"type": "text", "text": "Who made the heaven?"}]}]
    r = chat(messages=msgs, max_tokens=16, temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant" and len(c.message.content) > 0
    assert c.finish_reason in ("stop", "length") and r.object == "chat.completion"
    assert r.usage.completion_tokens <= 16 and r.usage.prompt_tokens > 5
    s = list(chat(messages=msgs, max_tokens=16, temperature=0, stream=True))
    assert s[0].choices[0].delta.role == "assistant"
    text = "".join(x.choices[0].delta.content or "" for x in s if x.choices)
    assert text == c.message.content, (text, c.message.content)
    assert s[-1].choices[0].finish_reason == c.finish_reason
    # tools reach the template; tool_choice "auto" is accepted
    tools = [{"type": "function", "function": {"name": "smite", "parameters": {}}}]
    t = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, tools=tools,
                                                         max_tokens=2, temperature=0)
    assert t.parse().usage.prompt_tokens > r.usage.prompt_tokens


def test_n_and_seed():
    a = cmpl(prompt="And God said", max_tokens=12, n=3, seed=42, temperature=1)
    b = cmpl(prompt="And God said", max_tokens=12, n=3, seed=42, temperature=1)
    ta = [c.text for c in sorted(a.choices, key=lambda c: c.index)]
    tb = [c.text for c in sorted(b.choices, key=lambda c: c.index)]
    assert sorted(c.index for c in a.choices) == [0, 1, 2]
    assert ta == tb, (ta, tb)
    assert len(set(ta)) > 1, ta  # choice i samples with seed + i
    assert a.usage.completion_tokens == sum(1 for _ in ta) * 12 or a.usage.completion_tokens <= 36
    c = cmpl(prompt="And God said", max_tokens=12, n=3, seed=43, temperature=1)
    assert [x.text for x in sorted(c.choices, key=lambda c: c.index)] != ta
    # several prompts x n: index = prompt * n + j
    m = cmpl(prompt=["And God said", "In the beginning"], max_tokens=4, n=2, temperature=0)
    assert sorted(x.index for x in m.choices) == [0, 1, 2, 3]
    by = {x.index: x.text for x in m.choices}
    assert by[0] == by[1] and by[2] == by[3] and by[0] == REF[: len(by[0])]


def test_stop_strings():
    stop = " God"
    cut = REF.find(stop)
    assert cut > 0, "the reference text should hold ' God'"
    r = cmpl(prompt="And God said", max_tokens=24, temperature=0, stop=[stop, "zzz"])
    assert r.choices[0].text == REF[:cut], (r.choices[0].text, REF[:cut])
    assert r.choices[0].finish_reason == "stop"
    s = list(cmpl(prompt="And God said", max_tokens=24, temperature=0, stop=stop, stream=True))
    text = "".join(c.choices[0].text for c in s if c.choices)
    assert text == REF[:cut] and s[-1].choices[0].finish_reason == "stop", text
    # a stop string spanning tokens ("him, Be" crosses " him", ",", " Be...")
    mid = REF.find("him, Be")
    if mid > 0:
        r = cmpl(prompt="And God said", max_tokens=24, temperature=0, stop="him, Be")
        assert r.choices[0].text == REF[:mid], r.choices[0].text


def test_logprobs():
    r = cmpl(prompt="And God said", max_tokens=8, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 8 and "".join(lp.tokens) == r.choices[0].text
    assert all(x <= 0 for x in lp.token_logprobs)
    assert all(1 <= len(t) <= 4 for t in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # greedy: the chosen token is the most likely one
    assert all(abs(max(t.values()) - x) < 1e-5 for t, x in zip(lp.top_logprobs, lp.token_logprobs))
    c = chat(messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0,
             logprobs=True, top_logprobs=2)
    content = c.choices[0].logprobs.content
    assert len(content) == c.usage.completion_tokens or c.choices[0].finish_reason == "stop"
    assert all(len(t.top_logprobs) == 2 and t.bytes == list(t.token.encode()) for t in content)


def test_echo_and_ids():
    r = cmpl(prompt="And God said", max_tokens=6, temperature=0, echo=True)
    assert r.choices[0].text == "And God said" + REF[: len(r.choices[0].text) - 12]
    tok = post("/tokenize", {"prompt": "And God said"})
    ids = tok["tokens"]
    assert tok["count"] == 4 and ids[0] == 0, tok
    r2 = cmpl(prompt=ids, max_tokens=24, temperature=0)
    assert r2.choices[0].text == REF
    de = post("/detokenize", {"tokens": ids[1:]})
    assert de["prompt"] == "And God said", de


def test_echo_logprobs():
    # the prompt's tokens first (the first without a logprob), then the new ones
    r = cmpl(prompt="And God said", max_tokens=3, temperature=0, echo=True, logprobs=1)
    c = r.choices[0]
    lp = c.logprobs
    assert c.text.startswith("And God said") and c.text[12:] == REF[: len(c.text) - 12], c.text
    assert len(lp.tokens) == 4 + 3 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:]), lp.token_logprobs
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[4] == 12, lp.text_offset
    assert "".join(lp.tokens[1:4]) == "And God said", lp.tokens
    # streamed: the echo chunk carries the prompt's logprobs; all chunks together the same
    toks, values = [], []
    for ch in cmpl(prompt="And God said", max_tokens=3, temperature=0, echo=True, logprobs=1,
                   stream=True):
        if ch.choices and ch.choices[0].logprobs:
            toks += ch.choices[0].logprobs.tokens
            values += ch.choices[0].logprobs.token_logprobs
    assert toks == lp.tokens and values == lp.token_logprobs, (toks, values)
    # offsets count characters, as Python's str does
    u = cmpl(prompt="And God said \u00e9\u00e9\u00e9", max_tokens=2, temperature=0, echo=True,
             logprobs=0)
    ul = u.choices[0].logprobs
    assert ul.text_offset[len(ul.tokens) - 2] == len("And God said \u00e9\u00e9\u00e9"), ul.text_offset
    # max_tokens 0: the prompt scored, nothing generated
    z = cmpl(prompt="And God said", max_tokens=0, echo=True, logprobs=0)
    assert z.choices[0].text == "And God said" and z.choices[0].finish_reason == "length"
    assert z.usage.completion_tokens == 0 and z.choices[0].logprobs.token_logprobs == \
        lp.token_logprobs[:4], z


def test_chat_tools_plain_reply():
    # the server reads tool calls in the hermes format (--tool-call-parser hermes); the demo
    # model writes none, so its reply is content, the same as with tool_choice "none" (the
    # same prompt, no parsing), streamed or not
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    msgs = [{"role": "user", "content": "And God said"}]
    none = chat(messages=msgs, max_tokens=12, temperature=0, tools=tools, tool_choice="none")
    r = chat(messages=msgs, max_tokens=12, temperature=0, tools=tools)
    m = r.choices[0].message
    assert m.content == none.choices[0].message.content and not m.tool_calls, m
    assert r.choices[0].finish_reason == none.choices[0].finish_reason
    text = "".join(ch.choices[0].delta.content or "" for ch in
                   chat(messages=msgs, max_tokens=12, temperature=0, tools=tools, stream=True)
                   if ch.choices)
    assert text == m.content, (text, m.content)


def test_errors():
    def expect(exc, fn, param=None, needle=None):
        try:
            fn()
        except exc as e:
            err = e.body if isinstance(e.body, dict) else {}
            err = err.get("error", err)
            if param is not None:
                assert err.get("param") == param, err
            if needle is not None:
                assert needle in err.get("message", ""), err
            return
        raise AssertionError(f"no {exc.__name__}")

    expect(openai.BadRequestError, lambda: cmpl(prompt="x", temperature=5), "temperature")
    expect(openai.BadRequestError, lambda: cmpl(prompt="x", max_tokens=100000), "max_tokens",
           "maximum context length is 512 tokens")
    expect(openai.BadRequestError, lambda: cmpl(prompt="x", extra_body={"bogus": 1}), "bogus")
    expect(openai.BadRequestError, lambda: cmpl(prompt="x", max_tokens=0), "max_tokens")
    expect(openai.BadRequestError,
           lambda: chat(messages=[{"role": "user", "content": "x"}], tool_choice="required",
                        tools=[{"type": "function", "function": {"name": "f"}}]), "tool_choice")
    # the field the client sent is named
    expect(openai.BadRequestError,
           lambda: chat(messages=[{"role": "user", "content": "x"}], max_tokens=100000),
           "max_tokens")
    expect(openai.BadRequestError,
           lambda: chat(messages=[{"role": "user", "content": "x"}],
                        max_completion_tokens=100000), "max_completion_tokens")
    expect(openai.BadRequestError, lambda: cmpl(prompt=[999999]), "prompt", "vocabulary")
    expect(openai.BadRequestError, lambda: chat(messages=[]), "messages")
    expect(openai.NotFoundError, lambda: cmpl(model="gpt-4", prompt="x"), "model")
    bad = openai.OpenAI(base_url=URL + "/v1", api_key="wrong", max_retries=0)
    expect(openai.AuthenticationError, lambda: bad.models.list())


def test_default_max_tokens():
    r = cmpl(prompt="And God said", temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 512 - 4 and r.choices[0].finish_reason == "length", r.usage


def test_continuous_batching():
    prompts = ["And God said", "In the beginning", "And it came to pass", "The LORD is",
               "Blessed are", "And Moses", "Thou shalt", "Let there be",
               "And the king", "Hear, O Israel", "For God so", "And Jesus said",
               "The heavens", "Woe unto", "And David", "Praise ye"]
    kw = [dict(prompt=p, max_tokens=8 + 3 * i, temperature=0) for i, p in enumerate(prompts)]
    alone = [cmpl(**k).choices[0].text for k in kw]
    with cf.ThreadPoolExecutor(16) as ex:
        together = list(ex.map(lambda k: cmpl(**k).choices[0].text, kw))
    for i, (a, b) in enumerate(zip(alone, together)):
        assert a == b, (i, a, b)


for name, fn in list(globals().items()):
    if name.startswith("test_") and callable(fn):
        check(name, fn)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
