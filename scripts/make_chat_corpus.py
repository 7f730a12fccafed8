#!/usr/bin/env python3
"""make_chat_corpus.py — expected chat-template renderings from transformers, for llmrt's tests.

Writes two files under tests/data/chat/:

  corpus.jsonl.gz   conformance corpus for tests/test_chat_corpus.c. Line 1 is a header naming the
                    templates (where each one's source is, which tokenizer folder gives its special
                    tokens and ids); then one line per conversation {"conv", "messages", "tools",
                    "add_generation_prompt", "extra"}; then one line per (template, conversation)
                    {"tpl", "conv", "text", "ids"} or {"tpl", "conv", "error", "raised"}: raised is
                    true when the template's raise_exception() failed, and error is then its message.
  features.jsonl    one Jinja feature per line {"name", "template", "vars", "out"} or {..., "error"},
                    rendered by transformers' own Jinja environment (tests/test_chat_template.c).

Everything is rendered by transformers' apply_chat_template (tokenize=False) with strftime_now's
clock fixed at 2024-09-05 12:00:00; ids are the tokenizer applied to the text with
add_special_tokens=False, checked against apply_chat_template(tokenize=True). Needs `pip install
transformers jinja2` (no torch). Run from the repo root, with the shared data beside the repo:

    python3 scripts/make_chat_corpus.py [--shared ../shared] [--out tests/data/chat]
"""
import argparse
import datetime
import gzip
import io
import json
import os
import random
import sys

import jinja2
import transformers
import transformers.utils.chat_template_utils as ctu
from transformers import AutoTokenizer

FIXED_NOW = datetime.datetime(2024, 9, 5, 12, 0, 0)  # the C test passes this instant, with TZ=UTC


class _FixedDateTime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


# strftime_now() calls datetime.now() from this module: patch it before any template compiles
ctu.datetime = _FixedDateTime

# (id, where the source is, tokenizer folder). "config:X" is tokenizers/X/tokenizer_config.json.
TEMPLATES = [
    ("llama3.1", "config:llama3_1", "llama3_1"),
    ("llama3.2", "chat_templates/Llama-3.2-Instruct.jinja", "llama3_1"),
    ("llama2", "chat_templates/Llama-2-7b-chat-hf.jinja", "llama2"),
    ("qwen2.5", "chat_templates/Qwen2.5-Instruct.jinja", "qwen3"),
    ("qwen3", "config:qwen3", "qwen3"),
    ("gemma3", "config:gemma3", "gemma3"),
    ("llama3", "config:llama3", "llama3"),
]

# ---- conversations ----

TEXTS = [
    "Hello!",
    "What is the capital of France?",
    "Paris is the capital of France.",
    "Can you write a haiku about the sea?",
    "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time.",
    "  leading and trailing spaces  ",
    "\n\nnewlines around\n\n",
    "\tTabbed\tcontent\t",
    "line one\nline two\n  indented line three\n",
    "Windows\r\nline endings\r\n",
    "",
    " ",
    "你好，世界！今天天气怎么样？",
    "日本語のテキストです。漢字とひらがなとカタカナ。",
    "안녕하세요, 만나서 반갑습니다.",
    "Ça va ? Über naïve café, señor. Ångström.",
    "مرحبا بالعالم! كيف حالك؟",
    "שלום עולם, מה שלומך?",
    "Emoji: 👋🏽 🎉 🇫🇷 👨‍👩‍👧 ❤️",
    "Ideographic\u3000space and no\u00a0break\u2028line sep",
    "Quotes 'single' \"double\" `back` and \\backslash\\",
    "Braces {{ not a template }} {% if %} {# c #}",
    "JSON-looking: {\"a\": [1, 2, {\"b\": null}]}",
    "Markup <b>bold</b> &amp; <script>x</script>",
    "Math: 2^10 = 1024, π ≈ 3.14159, ∑ x² ≥ 0",
    "A longer message. " * 12,
    "Zero\u200bwidth\u200dchars and\u00adsoft hyphen",
    "Control \x07 bell and \x1b escape",
    "Ends with a newline\n",
    "<think>not really thinking</think> inline tags",
]

SYSTEMS = [
    "You are a helpful assistant.",
    "You are a pirate. Answer like one.",
    "  Be concise.  \n",
    "Réponds en français, s'il te plaît.",
    "你是一个乐于助人的助手。",
    "",
    "Line 1\nLine 2\n\nLine 4",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web — returns the top results (UTF-8: café, 東京).",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "max_results": {"type": "integer", "default": 5, "minimum": 1},
                    "safe": {"type": "boolean", "default": True},
                    "weights": {"type": "array", "items": {"type": "number"}, "default": [0.5, 1e-7, 2.0]},
                },
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "calc",
            "description": "Evaluate an arithmetic expression.",
            "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]},
        },
    },
]

CALLS = [
    ("get_weather", {"city": "Paris", "unit": "celsius"}, "{\"temperature\": 21, \"sky\": \"clear\"}"),
    ("get_weather", {"city": "東京"}, "晴れ、25度"),
    ("search", {"query": "llm inference", "max_results": 3, "safe": False, "weights": [1.5, None]}, "1. A result\n2. Another"),
    ("calc", {"expr": "2 + 2 * 3"}, "8"),
    ("search", {"query": "quotes \"and\" \\ backslashes"}, ""),
]

REASONINGS = [
    "The user greets me. I should greet back.",
    "\nLet me think step by step.\n1. First\n2. Second\n",
    "考えてみます。",
]


def text(rng):
    return rng.choice(TEXTS)


def tool_call_msg(rng, k, as_string):
    name, args, _ = CALLS[k]
    call = {"type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False) if as_string else args}}
    if rng.random() < 0.3:
        call["id"] = "call_%d" % rng.randrange(1000)
    msg = {"role": "assistant", "tool_calls": [call]}
    r = rng.random()
    if r < 0.4:
        msg["content"] = ""
    elif r < 0.6:
        msg["content"] = "Let me check that."
    elif r < 0.8:
        msg["content"] = None
    return msg


def make_conversation(rng, i):
    """One conversation; the kind cycles so that every kind is well represented."""
    kind = ["chat", "chat", "tools", "reasoning", "odd", "blocks", "chat", "tools"][i % 8]
    msgs = []
    tools = None
    extra = {}
    if rng.random() < 0.5 and kind != "odd":
        msgs.append({"role": "system", "content": rng.choice(SYSTEMS)})
    turns = rng.randint(1, 8)
    if kind == "tools":
        tools = rng.sample(TOOLS, rng.randint(1, 3))
        msgs.append({"role": "user", "content": text(rng)})
        for t in range(rng.randint(1, 3)):
            k = rng.randrange(len(CALLS))
            multi = rng.random() < 0.15
            m = tool_call_msg(rng, k, as_string=rng.random() < 0.25)
            if multi:
                m["tool_calls"].append(tool_call_msg(rng, (k + 1) % len(CALLS), False)["tool_calls"][0])
            msgs.append(m)
            results = [CALLS[k][2]] + ([CALLS[(k + 1) % len(CALLS)][2]] if multi else [])
            for res in results:
                tm = {"role": "tool", "content": res}
                if rng.random() < 0.3:
                    tm["name"] = CALLS[k][0]
                if rng.random() < 0.15:
                    tm["content"] = {"result": res, "ok": True}
                msgs.append(tm)
            if rng.random() < 0.6:
                msgs.append({"role": "assistant", "content": text(rng)})
                if rng.random() < 0.5:
                    msgs.append({"role": "user", "content": text(rng)})
        if rng.random() < 0.25:
            extra["tools_in_user_message"] = False
        if rng.random() < 0.2:
            extra["builtin_tools"] = rng.choice([["brave_search", "wolfram_alpha"], ["code_interpreter", "brave_search"]])
    elif kind == "odd":
        # roles that do not alternate, an unknown role, a leading assistant: some templates raise
        roles = rng.choice([
            ["user", "user"], ["assistant", "user"], ["user", "assistant", "assistant"],
            ["system", "system", "user"], ["user", "narrator", "assistant"], ["system"],
        ])
        for r in roles:
            msgs.append({"role": r, "content": text(rng)})
    elif kind == "blocks":
        # content as a list of blocks (multimodal style); templates that concatenate strings fail
        for t in range(rng.randint(1, 3)):
            blocks = [{"type": "text", "text": text(rng)}]
            if rng.random() < 0.5:
                blocks.insert(0, {"type": "image", "url": "http://example.com/cat.png"})
            if rng.random() < 0.3:
                blocks.append({"type": "text", "text": text(rng)})
            msgs.append({"role": "user", "content": blocks})
            if t < 2 or rng.random() < 0.5:
                msgs.append({"role": "assistant", "content": rng.choice([text(rng), [{"type": "text", "text": text(rng)}]])})
        if msgs[-1]["role"] == "assistant" and rng.random() < 0.5:
            msgs.pop()
    else:
        for t in range(turns):
            msgs.append({"role": "user", "content": text(rng)})
            if t + 1 < turns or rng.random() < 0.4:
                a = {"role": "assistant", "content": text(rng)}
                if kind == "reasoning":
                    r = rng.random()
                    if r < 0.35:
                        a["reasoning_content"] = rng.choice(REASONINGS)
                    elif r < 0.5:
                        a["thinking"] = rng.choice(REASONINGS)
                    elif r < 0.8:
                        a["content"] = "<think>\n" + rng.choice(REASONINGS) + "\n</think>\n\n" + a["content"]
                    elif r < 0.9:
                        a["reasoning_content"] = None
                msgs.append(a)
    if kind == "reasoning" or rng.random() < 0.2:
        c = rng.random()
        if c < 0.4:
            extra["enable_thinking"] = False
        elif c < 0.7:
            extra["enable_thinking"] = True
    if rng.random() < 0.25:
        extra["date_string"] = rng.choice(["26 Jul 2024", "01 Jan 2025", "31 déc. 2024"])
    return {
        "conv": i,
        "messages": msgs,
        "tools": tools,
        "add_generation_prompt": rng.random() < 0.6,
        "extra": extra,
    }


# ---- rendering ----


def template_source(shared, where):
    if where.startswith("config:"):
        with open(os.path.join(shared, "tokenizers", where[7:], "tokenizer_config.json"), encoding="utf-8") as f:
            return json.load(f)["chat_template"]
    with open(os.path.join(shared, where), encoding="utf-8") as f:
        return f.read()


def render_case(tok, src, conv):
    kwargs = dict(conv["extra"])
    try:
        text = tok.apply_chat_template(
            conv["messages"], tools=conv["tools"], chat_template=src,
            add_generation_prompt=conv["add_generation_prompt"], tokenize=False, **kwargs)
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e), "raised": type(e) is jinja2.exceptions.TemplateError}
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        return {"error": "%s: %s" % (type(e).__name__, e), "raised": False}
    ids = tok(text, add_special_tokens=False)["input_ids"]
    ids2 = tok.apply_chat_template(
        conv["messages"], tools=conv["tools"], chat_template=src,
        add_generation_prompt=conv["add_generation_prompt"], tokenize=True, return_dict=False, **kwargs)
    if ids != list(ids2):
        sys.exit("ids differ between encode and apply_chat_template(tokenize=True)")
    return {"text": text, "ids": ids}


def write_gz(path, lines):
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as g:
        for line in lines:
            g.write((json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))
    with open(path, "wb") as f:
        f.write(raw.getvalue())


# ---- language features (rendered with transformers' Jinja environment directly) ----

FEATURE_VARS = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "  What's 2+2?  "},
    ],
    "d": {"b": 1, "a": [1, 2.5, None], "c": {"x": True}},
    "xs": [3, 1, 2],
    "people": [{"name": "Ann", "age": 31}, {"name": "bob", "age": 25}, {"name": "Cy", "age": 31}],
    "s": "Hello, World",
    "u8": "ça 你好 👋",
    "n": 7,
    "f": 2.5,
    "t": True,
    "z": None,
}


def features():
    """(name, template[, vars]) for every language feature the interpreter has."""
    F = []

    def add(name, tpl, vars=None):
        F.append((name, tpl, FEATURE_VARS if vars is None else vars))

    # output, literals, printing
    add("print_literals", "{{ 1 }} {{ -2 }} {{ 1.0 }} {{ 1.5e3 }} {{ 1e16 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 1_000 }} {{ 0x1f }} {{ 0o17 }} {{ 0b101 }}")
    add("print_constants", "{{ true }} {{ True }} {{ false }} {{ none }} {{ None }} [{{ undefined_var }}]")
    add("print_containers", "{{ [1, 'a', none, true, 1.5] }} {{ (1,) }} {{ () }} {{ (1, 'b') }} {{ {'k': 'v', 'n': [1]} }} {{ d }}")
    add("print_repr_quotes", "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\t', 'nl\\n', 'ctl\\x01', 'zw\\u200b', 'é', '😀'] }}")
    add("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\\"f\\x41\\u00e9\\U0001F600\\101\\q' }}|{{ \"dq 'sq'\" }}|{{ 'adj' 'acent' \"strings\" }}")
    add("print_tuple_expr", "{{ 1, 2 }}|{{ (s, n) }}")
    add("float_repr", "{{ 1/3 }} {{ 2/3*3 }} {{ 1e22 }} {{ 123456789012345.678 }} {{ 0.00012 }} {{ 5e-324 }} {{ -0.0 }} {{ 10/4 }} {{ 3 * 1.0 }}")
    # whitespace control
    add("ws_trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter\n")
    add("ws_lstrip_blocks", "line\n    {% if true %}\n    indented\n    {% endif %}\n  {# comment #}\nend")
    add("ws_minus", "a   {{- 'b' -}}   c\n\n{%- if true -%}\n  d  \n{%- endif -%}\n  e")
    add("ws_plus", "x\n    {%+ if true %}y{% endif +%}\nz")
    add("ws_comment_minus", "a  {#- comment -#}  b {# keep #} c\n{# trailing #}\nd")
    add("ws_variable_no_trim", "{{ 'a' }}\n{{ 'b' }}\n  {{ 'c' }}")
    add("ws_unicode_minus", "a\u3000\u00a0 {{- 'b' -}} \u2028\u3000c")
    add("ws_raw", "{% raw %}{{ not }} {% evaluated %}{% endraw %}|{%- raw -%}  x  {%- endraw -%}|")
    add("ws_crlf_source", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n")
    add("ws_trailing_newline", "text\n")
    add("ws_lstrip_not_after_text", "abc {% if true %}x{% endif %}\n  {{ 'v' }}  {% if true %}y{% endif %}")
    # expressions
    add("arith", "{{ 7 + 3 }} {{ 7 - 10 }} {{ 7 * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}")
    add("arith_bool", "{{ true + true }} {{ true * 3 }} {{ 1 + 2.0 }} {{ n * f }}")
    add("unary", "{{ -n }} {{ +n }} {{ -f }} {{ not t }} {{ not z }} {{ - - n }}")
    add("concat", "{{ 'a' ~ 1 ~ none ~ true ~ 1.5 ~ [1] ~ undefined_var ~ 'z' }}")
    add("str_plus", "{{ 'a' + 'b' }} {{ s + '!' }} {{ [1] + [2, 3] }} {{ 'ab' * 3 }} {{ 3 * 'x' }} {{ [0] * 3 }} {{ 'x' * 0 }}|{{ 'x' * -1 }}|")
    add("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'a' ~ 1 + 2 }} {{ 2 * 3 ~ 'x' }} {{ not 1 == 2 }} {{ 1 + 2 == 3 and 2 > 1 }} {{ -2 ** 2 }}")
    add("compare", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ 1 != 1 }} {{ 'a' == 'a' }} {{ none == none }} {{ [1] == [1] }} {{ d == d }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}")
    add("compare_mixed", "{{ 1 == '1' }} {{ none == false }} {{ 0 == false }} {{ 1 == true }} {{ undefined_var == none }}")
    add("in_operator", "{{ 'ell' in s }} {{ 'x' in s }} {{ 1 in xs }} {{ 9 not in xs }} {{ 'b' in d }} {{ 'q' in d }} {{ '' in s }} {{ 1 in undefined_var }}")
    add("and_or_values", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 1 }} {{ none or none }} {{ [] or {} }} {{ t and n }}")
    add("condexpr", "{{ 'yes' if t else 'no' }} {{ 'yes' if z else 'no' }} [{{ 'only' if z }}] {{ 1 if false else 2 if false else 3 }}")
    add("truthiness", "{% for v in [0, 1, 0.0, 0.5, '', 'a', [], [0], {}, {'a': 1}, none, true, false] %}{{ 'T' if v else 'F' }}{% endfor %}")
    add("attr_item_access", "{{ messages[0].role }} {{ messages[0]['content'] }} {{ messages[-1].content }} {{ d.a[1] }} {{ d['c'].x }} {{ xs.0 }} {{ messages[10] }}|{{ d.missing }}|")
    add("slices", "{{ xs[1:] }} {{ xs[:2] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[-2:] }} {{ s[7:] }} {{ s[::-1] }} {{ u8[1:4] }} {{ u8[-1] }} {{ xs[5:] }} {{ s[:-100] }}|")
    add("dict_method_wins", "{{ x.items is defined }} {{ x['items'] }} {{ x.get('items') }}", {"x": {"items": [1, 2], "keys": "k"}})
    add("none_attr", "[{{ z.foo }}] {{ z.foo is defined }} {{ n.foo is defined }} {{ s.foo is defined }}")
    add("list_literal_trailing_comma", "{{ [1, 2,] }} {{ {'a': 1,} }} {{ (1, 2,) }}")
    add("dict_literal_keys", "{{ {1: 'a', 'b': 2, none: 3, true: 4}[true] }} {{ {1: 'one'}[1.0] }}")
    # statements
    add("if_elif_else", "{% for v in [1, 2, 3, 4] %}{% if v == 1 %}one{% elif v == 2 %}two{% elif v == 3 %}three{% else %}other{% endif %},{% endfor %}")
    add("for_loop_vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.depth }};{% endfor %}")
    add("for_prev_next", "{% for x in xs %}[{{ loop.previtem }}|{{ loop.nextitem }}|{{ loop.previtem is defined }}]{% endfor %}")
    add("for_cycle_changed", "{% for x in [1, 1, 2] %}{{ loop.cycle('a', 'b') }}{{ loop.changed(x) }} {% endfor %}")
    add("for_filter", "{% for x in xs if x > 1 %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}")
    add("for_else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %} {% for x in xs if x > 10 %}{% else %}none kept{% endfor %}")
    add("for_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}")
    add("for_dict_and_string", "{% for k in d %}{{ k }}{% endfor %} {% for c in 'héllo' %}{{ c }}.{% endfor %}")
    add("for_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}")
    add("for_nested_loop", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}")
    add("for_scope", "{% set x = 'outer' %}{% for i in [1, 2] %}[{{ x }}]{% set x = i %}({{ x }}){% endfor %}{{ x }}")
    add("if_scope", "{% if true %}{% set y = 'set in if' %}{% endif %}{{ y }}")
    add("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set c, e = [3, 4] %}{{ c + e }}")
    add("set_block", "{% set x %}Hello {{ s }}!{% endset %}[{{ x }}] {% set y | upper | trim %}  abc  {% endset %}[{{ y }}]")
    add("namespace", "{% set ns = namespace(count=0, items=[]) %}{% for x in xs %}{% set ns.count = ns.count + x %}{% endfor %}{{ ns.count }} {{ ns.items }} {{ ns.missing is defined }}")
    add("namespace_dict_arg", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns }}")
    add("macro", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet(greeting='Yo', name='Cy') }}")
    add("macro_recursion", "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * fact(k - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}")
    add("macro_sees_globals", "{% set g = 'global' %}{% macro m() %}{{ g }} {{ s }}{% endmacro %}{{ m() }}")
    add("macro_missing_arg", "{% macro m(a, b) %}[{{ a }}][{{ b }}]{% endmacro %}{{ m(1) }}")
    add("filter_block", "{% filter upper %}shout {{ s }}{% endfilter %}")
    add("with_block", "{% with a = 1, b = 'two' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]")
    add("print_statement", "{% print s ~ '!' %}")
    add("generation_tag", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% endif %}{% endfor %}")
    add("call_block", "{% macro box(title) %}[{{ title }}: {{ caller() }}]{% endmacro %}{% call box('T') %}body {{ s }}{% endcall %}")
    add("call_block_args", "{% macro each(xs) %}{% for x in xs %}{{ caller(x, loop.index) }};{% endfor %}{% endmacro %}{% call(item, i) each(xs) %}{{ i }}={{ item * 10 }}{% endcall %}")
    add("joiner", "{% set j = joiner() %}{% for x in xs %}{{ j() }}{{ x }}{% endfor %}|{% set k = joiner(' - ') %}{{ k() }}{{ k() }}{{ k() }}")
    add("splat_args", "{{ range(*[1, 7, 2])|list }} {% macro f(a, b=0, c=0) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ f(*[1, 2]) }} {{ f(1, **{'c': 3}) }} {{ dict(z=1, **d) }}")
    add("error_splat_duplicate", "{{ dict(a=1, **d) }}")
    add("error_splat_order", "{{ dict(**d, a=1) }}")
    add("comments", "a{# a comment with {{ tags }} and {% tags %} #}b{#\nmultiline\n#}c")
    # filters
    add("filter_trim", "[{{ '  x  '|trim }}] [{{ 'xxaxx'|trim('x') }}] [{{ '\u3000\u00a0x\u2028'|trim }}] [{{ none|trim }}] [{{ undefined_var|trim }}]")
    add("filter_case", "{{ s|upper }} {{ s|lower }} {{ 'hello wORLD'|title }} {{ \"they're x-ray (a)[b]\"|title }} {{ 'hELLO'|capitalize }} {{ u8|upper }}")
    add("filter_length", "{{ xs|length }} {{ s|length }} {{ u8|length }} {{ d|length }} {{ undefined_var|length }} {{ xs|count }}")
    add("filter_replace", "{{ s|replace('l', 'L') }} {{ s|replace('l', 'L', 2) }} {{ 'abc'|replace('', '-') }}")
    add("filter_join", "{{ xs|join }} {{ xs|join(', ') }} {{ people|join(',', attribute='name') }} {{ 'abc'|join('.') }}")
    add("filter_first_last", "{{ xs|first }} {{ xs|last }} {{ s|first }} {{ s|last }} [{{ []|first }}] {{ d|first }}")
    add("filter_default", "{{ undefined_var|default('dflt') }} {{ z|default('dflt') }} {{ ''|default('dflt', true) }} {{ undefined_var|d }}| {{ s|d('x') }}")
    add("filter_string_int_float", "{{ n|string }} {{ '42'|int + 1 }} {{ ' 7 '|int }} {{ '3.9'|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ '0x1A'|int(0, 16) }} {{ 3.99|int }} {{ '2.5'|float }} {{ 'nope'|float }} {{ n|float }} {{ '1_000'|int }}")
    add("filter_list", "{{ 'abc'|list }} {{ d|list }} {{ xs|list }} {{ (1, 2)|list }}")
    add("filter_unique", "{{ [1, 2, 1, 3, 2]|unique|list }} {{ ['a', 'A', 'b']|unique|list }} {{ ['a', 'A', 'b']|unique(case_sensitive=true)|list }} {{ people|unique(attribute='age')|map(attribute='name')|list }}")
    add("filter_reverse", "{{ xs|reverse|list }} {{ s|reverse }} {{ (1, 2)|reverse|list }}")
    add("filter_sort", "{{ xs|sort }} {{ xs|sort(reverse=true) }} {{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ people|sort(attribute='age')|map(attribute='name')|join(',') }}")
    add("filter_dictsort", "{{ d|dictsort }} {{ {'b': 2, 'A': 1, 'c': 0}|dictsort }} {{ {'b': 2, 'a': 3}|dictsort(by='value') }} {{ {'b': 2, 'a': 3}|dictsort(reverse=true) }}")
    add("filter_items", "{% for k, v in d|items %}{{ k }}:{{ v }} {% endfor %}[{% for k, v in undefined_var|items %}x{% endfor %}]")
    add("filter_select_reject", "{{ xs|select('odd')|list }} {{ xs|reject('odd')|list }} {{ [0, 1, '', 'a', none]|select|list }} {{ xs|select('greaterthan', 1)|list }} {{ xs|select('in', [1, 2])|list }}")
    add("filter_selectattr", "{{ messages|selectattr('role', 'equalto', 'user')|list|length }} {{ messages|rejectattr('role', 'eq', 'user')|map(attribute='content')|join('|') }} {{ people|selectattr('age', '>', 30)|map(attribute='name')|list }} {{ messages|selectattr('missing')|list }}")
    add("filter_map", "{{ messages|map(attribute='role')|list }} {{ xs|map('string')|join('-') }} {{ ['a', 'b']|map('upper')|list }} {{ people|map(attribute='nick', default='?')|list }} {{ people|map(attribute='name')|map('lower')|list }}")
    add("filter_tojson", "{{ d|tojson }} {{ s|tojson }} {{ u8|tojson }} {{ [1.0, 2, 1e-7, 1e16, none, true]|tojson }} {{ 'q\"\\\\\\n\\t\\x01\\x7f'|tojson }}")
    add("filter_tojson_indent", "{{ d|tojson(indent=2) }}\n{{ [[], {}, [1]]|tojson(indent=4) }}\n{{ d|tojson(indent='\\t') }}\n{{ d|tojson(indent=0) }}")
    add("filter_tojson_args", "{{ d|tojson(separators=(',', ':')) }} {{ d|tojson(sort_keys=true) }} {{ u8|tojson(ensure_ascii=true) }} {{ {2: 'int key', 1.5: 'float', true: 'b', none: 'n'}|tojson }}")
    add("filter_indent", "[{{ 'a\\nb\\n\\nc'|indent }}] [{{ 'a\\nb'|indent(2, true) }}] [{{ 'a\\n\\nb\\n'|indent(2, blank=true) }}] [{{ 'x\\ny'|indent('> ') }}]")
    add("filter_misc", "{{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.1|round(0, 'ceil') }} {{ xs|sum }} {{ people|sum(attribute='age') }} {{ xs|max }} {{ xs|min }} {{ people|max(attribute='age')|attr('name') }} {{ 'one two  three'|wordcount }}")
    add("filter_escape_safe", "{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|escape }} {{ '<b>'|safe }} {{ 5|safe }}")
    add("filter_center_batch", "[{{ 'ab'|center(7) }}] {{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|batch(2, 0)|list }}")
    add("filter_attr", "{{ messages[0]|attr('role') }}|{{ d|attr('items') is defined }}")
    # tests
    add("tests_types", "{% for v in [1, 1.5, 'a', [], {}, none, true, undefined_var] %}{{ v is number }}{{ v is integer }}{{ v is float }}{{ v is string }}{{ v is mapping }}{{ v is iterable }}{{ v is sequence }}{{ v is none }}{{ v is boolean }}{{ v is defined }}{{ v is undefined }};{% endfor %}")
    add("tests_values", "{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ t is true }}{{ t is false }}{{ false is false }}{{ 'a' is eq 'a' }}{{ 'a' is equalto 'b' }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is ge 2 }}{{ 1 is in xs }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 'aB' is lower }}")
    add("tests_not", "{{ z is not none }}{{ n is not string }}{{ undefined_var is not defined }}{{ not n is odd }}")
    add("tests_callable", "{{ s.upper is callable }}{{ s is callable }}{{ range is callable }}{{ 'upper' is filter }}{{ 'nope' is filter }}{{ 'odd' is test }}")
    # methods
    add("str_strip", "[{{ '  x  '.strip() }}][{{ 'xxaxx'.strip('x') }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ '\\n\\nx\\n'.strip('\\n') }}][{{ 'abcx'.rstrip('xc') }}]")
    add("str_split", "{{ '  a  b c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a b c'.split(None, 1) }} {{ '  a b c  '.rsplit(None, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split() }} {{ ''.split(',') }} {{ 'a\u3000b'.split() }}")
    add("str_affix", "{{ s.startswith('Hell') }}{{ s.startswith(('x', 'H')) }}{{ s.endswith('ld') }}{{ s.endswith('Hello', 0, 5) }}{{ s.startswith('World', 7) }}")
    add("str_find_count", "{{ s.find('o') }} {{ s.rfind('o') }} {{ s.find('z') }} {{ s.count('l') }} {{ u8.find('你') }} {{ s.index('W') }} {{ 'aaaa'.count('aa') }} {{ s.count('') }}")
    add("str_case", "{{ s.upper() }} {{ s.lower() }} {{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'hELLO'.capitalize() }} {{ 'Hello'.swapcase() }}")
    add("str_replace_join", "{{ s.replace('l', '_') }} {{ s.replace('l', '_', 1) }} {{ '-'.join(['a', 'b', 'c']) }} {{ ''.join('xyz') }}")
    add("str_format", "{{ '{} and {}'.format('a', 'b') }} {{ '{1}{0}'.format('x', 'y') }} {{ '{name}!'.format(name='Ann') }} {{ '{{}} {}'.format(1) }} {{ '{!r}'.format('q') }}")
    add("str_predicates", "{{ '123'.isdigit() }}{{ 'abc'.isalpha() }}{{ 'a1'.isalnum() }}{{ '  '.isspace() }}{{ 'abc'.islower() }}{{ 'ABC'.isupper() }}{{ ''.isdigit() }}")
    add("str_misc_methods", "{{ 'ab'.ljust(4, '.') }}|{{ 'ab'.rjust(4) }}|{{ 'ab'.center(5, '*') }}|{{ '42'.zfill(5) }}|{{ 'a=b=c'.partition('=') }}|{{ 'a=b=c'.rpartition('=') }}|{{ 'x\\ny\\r\\nz'.splitlines() }}|{{ 'prefix-x'.removeprefix('prefix-') }}")
    add("dict_methods", "{{ d.get('b') }} {{ d.get('nope') }} {{ d.get('nope', 'dflt') }} {{ d.keys()|list }} {{ d.values()|list|length }} {{ d.items()|list|first }} {{ d.items() }} {{ d.keys() }}")
    add("list_methods", "{{ xs.index(2) }} {{ [1, 1, 2].count(1) }}")
    # globals
    add("range", "{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }} {{ range(3) }}")
    add("dict_global", "{{ dict(a=1, b='x') }} {{ dict({'z': 1}, y=2) }}")
    add("strftime_now", "{{ strftime_now('%Y-%m-%d %H:%M:%S') }} {{ strftime_now('%d %B %Y (%A)') }} {{ strftime_now('%b') }}")
    # generators and views (Python semantics that templates rely on without knowing)
    add("generator_truthy", "{% if []|select('odd') %}always true{% endif %} {% if []|select('odd')|list %}never{% endif %}")
    add("generator_one_shot", "{% set g = xs|select('odd') %}{{ g|first }}|{% for x in g %}{{ x }}{% endfor %}|{% for x in g %}{{ x }}{% endfor %}|")
    # undefined behaviour
    add("undefined_print_iterate", "[{{ nothing }}][{% for x in nothing %}x{% endfor %}][{{ nothing|length }}][{{ nothing is defined }}][{{ nothing ~ 'x' }}][{{ nothing|default('d') }}][{{ 'a' in nothing }}]")
    # errors (the message is only compared for raise_exception)
    add("error_raise_exception", "{% if messages|length > 1 %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}")
    add("error_raise_unicode", "{{ raise_exception('Ünïcödé — ' ~ s) }}")
    add("error_undefined_attr", "{{ undefined_var.attr }}")
    add("error_undefined_item", "{{ undefined_var[0] }}")
    add("error_undefined_arith", "{{ undefined_var + 1 }}")
    add("error_type_concat", "{{ 'a' + 1 }}")
    add("error_div_zero", "{{ 1 // 0 }}")
    add("error_compare_types", "{{ 'a' < 1 }}")
    add("error_not_callable", "{{ s() }}")
    add("error_sandbox_append", "{{ xs.append(4) }}")
    add("error_sandbox_pop", "{{ d.pop('a') }}")
    add("error_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}")
    add("error_tojson_undefined", "{{ undefined_var|tojson }}")
    add("error_length_generator", "{{ xs|select('odd')|length }}")
    add("error_items_not_mapping", "{{ xs|items|list }}")
    add("error_not_namespace", "{% set v = 1 %}{% set v.x = 2 %}")
    add("error_range_too_big", "{{ range(100001)|length }}")
    add("error_syntax_unclosed", "{% if true %}no end")
    add("error_syntax_unknown_tag", "{% frobnicate %}")
    add("error_syntax_unknown_filter", "{{ s|frobnicate }}")
    add("error_syntax_bad_expr", "{{ 1 + }}")
    add("error_syntax_unclosed_var", "{{ s ")
    add("error_break_outside_loop", "{% break %}")
    return F


# Templates from the syntax tests of google/minja (https://github.com/google/minja,
# tests/test-syntax.cpp; MIT licence, Copyright 2024 Google LLC): the ones rendered there with empty
# variables. Only the template strings are taken; the expected outputs are rendered here again by
# transformers' environment (trim_blocks and lstrip_blocks on, which minja's tests mostly leave off).
# Left out: those whose output shows a Python object address.
MINJA_SYNTAX = [
    "{{ ' a '.strip() }}",
    "{{ ' a '.lstrip() }}",
    "{{ ' a '.rstrip() }}",
    "{{ 'abcXYZabc'.strip('ac') }}",
    "{{ 'a b'.split(' ') | tojson }}",
    "{{ 'ok'.capitalize() }}",
    "{{ 'abcXYZabcXYZabc'.replace('bc', 'oui') }}",
    "{{ 'abcXYZabcXYZabc'.replace('abc', 'ok', 2) }}",
    "{{ 'abcXYZabcXYZabc'.replace('def', 'ok') }}",
    "{{ 'hello world'.upper() }}",
    "{{ 'MiXeD'.upper() }}",
    "{{ ''.upper() }}",
    "{{ 'HELLO WORLD'.lower() }}",
    "{{ 'MiXeD'.lower() }}",
    "{{ ''.lower() }}",
    "{# Hey\nHo #}{#- Multiline...\nComments! -#}{{ 'ok' }}{# yo #}",
    '  {% set _ = 1 %}    {% set _ = 2 %}b',
    '{%- if True %}        {% set _ = x %}{%- endif %}{{ 1 }}',
    '    {% if True %}\n    {% endif %}',
    '  {% set _ = 1 %}    ',
    '  \n    {% set _ = 1 %}        \n                ',
    '{% set _ = 1 %}\n  ',
    '{{ range(*[2,4]) | list }}',
    "{% for i in [true, false, 10, -10, 10.1, -10.1, None, 'a', '2', {}, [1]] %}{{ i | int }}, {% endfor %}",
    '{% filter trim %} abc {% endfilter %}',
    '{{ [1] + [2, 3] }}',
    "{{ 'AbC' | lower }}",
    "{{ 'me' | upper }}",
    "{{ foo | default('the default') }}{{ 1 | default('nope') }}",
    "{{ '' | default('the default', true) }}{{ 1 | default('nope', true) }}",
    "{% set txt = 'a\\nb\\n' %}{{ txt | indent(2) }}|{{ txt | indent(2, first=true) }}",
    "  {{- 'a' -}}{{ '  ' }}{{- 'b' -}}  ",
    '{{ "abcd"[1:-1] }}',
    '{{ [0, 1, 2, 3][1:-1] }}',
    '{{ "123456789" | length }}',
    "    {%- if True %}{%- endif %}{{ '        ' }}{%- for x in [] %}foo{% endfor %}end",
    "{% set ns = namespace(is_first=false, nottool=false, and_or=true, delme='') %}{{ ns.is_first }}",
    "{{ {} is mapping }},{{ '' is mapping }}",
    "{{ {} is iterable }},{{ '' is iterable }}",
    '{% for x in ["a", "b"] %}{{ x }},{% endfor %}',
    '{% for x in {"a": 1, "b": 2} %}{{ x }},{% endfor %}',
    '{% for x in "ab" %}{{ x }},{% endfor %}',
    "{{ 'foo bar'.title() }}",
    '{{ 1 | safe }}',
    "{{ 'abc'.startswith('ab') }},{{ ''.startswith('a') }}",
    "{{ 'abc'.endswith('bc') }},{{ ''.endswith('a') }}",
    '{{ none | selectattr("foo", "equalto", "bar") | list }}',
    '{{ \'a\' in {"a": 1} }},{{ \'a\' in {} }}',
    '{{ \'a\' in ["a"] }},{{ \'a\' in [] }}',
    "{{ 'a' in 'abc' }},{{ 'd' in 'abc' }}",
    "{{ 'a' not in 'abc' }},{{ 'd' not in 'abc' }}",
    "{{ ['a', 'b', 'c', 'a'] | select('in', ['a']) | list }}",
    "{{ {'a': 1, 'b': 2}.keys() | list }},{{ {}.keys() | list }}",
    '{{ [{"a": 1}, {"a": 2}, {}] | selectattr("a", "equalto", 1) | list }}',
    '{{ [{"a": 1}, {"a": 2}, {}] | rejectattr("a", "equalto", 1) | list }}',
    '{{ [{"a": 1}, {"a": 2}] | map(attribute="a") | list }}',
    '{{ ["", "a"] | map("length") | list }}',
    '{{ range(3) | last }}',
    '{% set foo = true %}{{ foo is defined }}',
    '{% set foo = true %}{{ not foo is defined }}',
    '{% set foo = true %}{{ foo is true }}',
    '{% set foo = true %}{{ foo is false }}',
    '{% set foo = false %}{{ foo is not true }}',
    '{% set foo = false %}{{ foo is not false }}',
    '{{ {"a": "b"} | tojson }}',
    '{{ {"a": "b"} }}',
    '{%- set separator = joiner(\' | \') -%}\n            {%- for item in ["a", "b", "c"] %}{{ separator() }}{{ item }}{% endfor -%}',
    'a\nb\n',
    "  {{- ' a\n'}}",
    '\n            {%- for x in range(3) -%}\n                {%- if loop.first -%}\n                    but first, mojitos!\n                {%- endif -%}\n                {{ loop.index }}{{ "," if not loop.last -}}\n            {%- endfor -%}\n        ',
    "{{ 'a' + [] | length | string + 'b' }}",
    "{{ [1, 2, 3] | join(', ') + '...' }}",
    "{{ 'Tools: ' + [1, 2, 3] | reject('equalto', 2) | join(', ') + '...' }}",
    "{{ 'Tools: ' + [1, 2, 3] | select('equalto', 2) | join(', ') + '...' }}",
    "{{ [1, 2, 3] | join(', ') }}",
    '{% for i in range(3) %}{{i}},{% endfor %}',
    "{% set foo %}Hello {{ 'there' }}{% endset %}{{ 1 ~ foo ~ 2 }}",
    "{{ [1, False, 2, '3', 1, '3', False] | unique | list }}",
    '{{ range(5) | length % 2 }}',
    '{{ range(5) | length % 2 == 1 }},{{ [] | length > 0 }}',
    '\n            {%- for x, y in [("a", "b"), ("c", "d")] -%}\n                {{- x }},{{ y -}};\n            {%- endfor -%}\n        ',
    '{{ 1 is not string }}',
    "{{ 'ab' * 3 }}",
    '{{ [1, 2, 3][-1] }}',
    '{%- for i in range(0) -%}NAH{% else %}OK{% endfor %}',
    "\n            {%- for i in range(5) -%}\n                ({{ i }}, {{ loop.cycle('odd', 'even') }}),\n            {%- endfor -%}\n        ",
    '\n            {%- set o = [0, 1, 2, 3] -%}\n            {%- set _ = o.pop() -%}\n            {{- o | tojson -}}\n            {%- set _ = o.pop(1) -%}\n            {{- o | tojson -}}\n        ',
    '\n            {%- set o = {"x": 1, "y": 2} -%}\n            {%- set _ = o.pop("x") -%}\n            {{- o | tojson -}}\n        ',
    '\n            {%- set res = [] -%}\n            {%- for c in ["<", ">", "&", \'"\'] -%}\n                {%- set _ = res.append(c | e) -%}\n            {%- endfor -%}\n            {{- res | join(", ") -}}\n        ',
    '\n            {%- set x = 1 -%}\n            {%- set y = 2 -%}\n            {%- macro foo(x, z, w=10) -%}\n                x={{ x }}, y={{ y }}, z={{ z }}, w={{ w -}}\n            {%- endmacro -%}\n            {{- foo(100, 3) -}}\n        ',
    '\n            {% macro input(name, value=\'\', type=\'text\', size=20) -%}\n                <input type="{{ type }}" name="{{ name }}" value="{{ value|e }}" size="{{ size }}">\n            {%- endmacro -%}\n\n            <p>{{ input(\'username\') }}</p>\n            <p>{{ input(\'password\', type=\'password\') }}</p>',
    "\n            {#- The values' default array should be created afresh at each call, unlike the equivalent Python function -#}\n            {%- macro foo(values=[]) -%}\n                {%- set _ = values.append(1) -%}\n                {{- values -}}\n            {%- endmacro -%}\n            {{- foo() }} {{ foo() -}}",
    '\n            {%- macro test() -%}{{ caller() }},{{ caller() }}{%- endmacro -%}\n            {%- call test() -%}x{%- endcall -%}\n        ',
    '\n            {%- macro outer() -%}Outer[{{ caller() }}]{%- endmacro -%}\n            {%- macro inner() -%}Inner({{ caller() }}){%- endmacro -%}\n            {%- call outer() -%}{%- call inner() -%}X{%- endcall -%}{%- endcall -%}\n        ',
    '\n            {%- macro test(prefix, suffix) -%}{{ prefix }}{{ caller() }}{{ suffix }}{%- endmacro -%}\n            {%- set items = ["a", "b"] -%}\n            {%- call test("<ul>", "</ul>") -%}\n                {%- for item in items -%}\n                    <li>{{ item | upper }}</li>\n                {%- endfor -%}\n            {%- endcall -%}\n        ',
    '\n            {%- macro recursive(obj) -%}\n            {%- set ns = namespace(content = caller()) -%}\n            {%- for key, value in obj.items() %}\n                {%- if value is mapping %}\n                    {%- call recursive(value) -%}\n                        {{ \'\\\\n\\\\nclass \' + key.title() + \':\\\\n\' }}\n                    {%- endcall -%}\n                {%- else -%}\n                    {%- set ns.content = ns.content + \'  \' + key + \': \' + value + \'\\\\n\' -%}\n                {%- endif -%}\n            {%- endfor -%}\n            {{ ns.content }}\n            {%- endmacro -%}\n\n            {%- call recursive({"a": {"b": "1", "c": "2"}}) -%}\n            {%- endcall -%}\n        ',
    '{% generation %}Foo{% endgeneration %}',
    '{{ {1: 2} | items | list | tojson }}',
    '{{ {1: 2, 3: 4, 5: 7} | dictsort | tojson }}',
    '{{ {1: 2}.items() | map("list") | list }}',
    "{{ {1: 2}.get(1) }}; {{ {}.get(1) or '' }}; {{ {}.get(1, 10) }}",
    '\n            {%- for x in [1, 1.2, "a", true, True, false, False, None, [], [1], [1, 2], {}, {"a": 1}, {1: "b"}] -%}\n                {{- x | tojson -}},\n            {%- endfor -%}\n        ',
    '\n            {%- set n = namespace(value=1, title=\'\') -%}\n            {{- n.value }} "{{ n.title }}",\n            {%- set n.value = 2 -%}\n            {%- set n.title = \'Hello\' -%}\n            {{- n.value }} "{{ n.title }}"',
    " a {{  'b' -}} c ",
    " a {{- 'b'  }} c ",
    "a\n{{- 'b'  }}\nc",
    "a\n{{  'b' -}}\nc",
    '{{ [] is iterable }}',
    '{{ [] is not number }}',
    '{% set x = [0, 1, 2, 3] %}{{ x[1:] }}{{ x[:2] }}{{ x[1:3] }}',
    "{% set x = '0123' %}{{ x[1:] }};{{ x[:2] }};{{ x[1:3] }};{{ x[:] }};{{ x[::] }}",
    '{% set x = [0, 1, 2, 3] %}{{ x[::-1] }}{{ x[:0:-1] }}{{ x[2::-1] }}{{ x[2:0:-1] }}{{ x[::2] }}{{ x[::-2] }}{{ x[-2::-2] }}',
    "{% set x = '0123' %}{{ x[::-1] }};{{ x[:0:-1] }};{{ x[2::-1] }};{{ x[2:0:-1] }};{{ x[::2] }};{{ x[::-2] }};{{ x[-2::-2] }}",
    "{{ ' a  ' | trim }}",
    '{{ None | trim }}',
    '{{ range(3) | list }}{{ range(4, 7) | list }}{{ range(0, 10, 2) | list }}',
    ' {{ "a" -}} b {{- "c" }} ',
    '{% set x = [] %}{% set _ = x.append(1) %}{{ x | tojson(indent=2) }}',
    '{{ not [] }}',
    '\n        {%- set user = "Olivier" -%}\n        {%- set greeting = "Hello " ~ user -%}\n        {{- greeting -}}\n    ',
    '{% if 1 %}{% elif 1 %}{% else %}{% endif %}',
    '{% for i in range(10) %}{{ i }},{% if i == 2 %}{% break %}{% endif %}{% endfor %}',
    '{% for i in range(10) %}{% if i % 2 %}{% continue %}{% endif %}{{ i }},{% endfor %}',
    '{% break %}',
    '{% continue %}',
    '{%- set _ = [].pop() -%}',
    '{%- set _ = {}.pop() -%}',
    "{%- set _ = {}.pop('foooo') -%}",
    '{% else %}',
    '{% endif %}',
    '{% elif 1 %}',
    '{% endfor %}',
    '{% endfilter %}',
    '{% endmacro %}',
    '{% endcall %}',
    '{% if 1 %}',
    '{% for x in 1 %}',
    '{% generation %}',
    '{% if 1 %}{% else %}',
    '{% if 1 %}{% else %}{% elif 1 %}{% endif %}',
    '{% filter trim %}',
    '{# ',
    '{% macro test() %}',
    '{% call test %}',
    '{%- macro test() -%}content{%- endmacro -%}{%- call test -%}caller_content{%- endcall -%}',
    '{{ a.b }}',
    "{{ raise_exception('hey') }}",
]


def render_features():
    out = []
    cases = features() + [("minja_%03d" % i, t, {}) for i, t in enumerate(MINJA_SYNTAX)]
    for name, tpl, vars in cases:
        rec = {"name": name, "template": tpl, "vars": vars}
        try:
            rec["out"] = ctu._compile_jinja_template(tpl).render(**vars)
        except jinja2.exceptions.TemplateError as e:
            rec["error"] = str(e)
            rec["raised"] = type(e) is jinja2.exceptions.TemplateError
        except Exception as e:  # TypeError, ZeroDivisionError, ...: Jinja lets them through
            rec["error"] = "%s: %s" % (type(e).__name__, e)
            rec["raised"] = False
        out.append(rec)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="tests/data/chat")
    ap.add_argument("--conversations", type=int, default=400)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rng = random.Random(20240905)
    convs = [make_conversation(rng, i) for i in range(args.conversations)]
    header = {
        "kind": "header",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "now": "2024-09-05T12:00:00Z",
        "templates": [{"id": i, "source": w, "tokenizer": t} for i, w, t in TEMPLATES],
    }
    lines = [header] + convs
    counts = {}
    for tid, where, tokdir in TEMPLATES:
        tok = AutoTokenizer.from_pretrained(os.path.join(args.shared, "tokenizers", tokdir))
        src = template_source(args.shared, where)
        ok = 0
        for conv in convs:
            rec = {"tpl": tid, "conv": conv["conv"]}
            rec.update(render_case(tok, src, conv))
            ok += "text" in rec
            lines.append(rec)
        counts[tid] = (ok, len(convs))
    write_gz(os.path.join(args.out, "corpus.jsonl.gz"), lines)
    feats = render_features()
    with open(os.path.join(args.out, "features.jsonl"), "w", encoding="utf-8") as f:
        for rec in feats:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    for tid, (ok, n) in counts.items():
        print("%-9s %3d rendered, %3d errors" % (tid, ok, n - ok))
    print("%d features (%d errors)" % (len(feats), sum("error" in r for r in feats)))


if __name__ == "__main__":
    main()
