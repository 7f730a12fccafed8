#!/usr/bin/env python3
"""Builds the tokenizer conformance corpus and the ids HF `tokenizers` gives for it.

Run from the repository root (needs `pip install tokenizers`, and ../shared/tokenizers/):

    python3 scripts/make_tokenizer_corpus.py [--shared ../shared/tokenizers] [--out tests/data/tokenizer]

Writes (gzip-compressed JSON lines, deterministic):
  corpus.jsonl.gz   one item per line: a JSON string (the text), or {"hex": "..."} for raw bytes
                    that are not valid UTF-8 (HF sees them decoded with errors="replace").
  NAME.jsonl.gz     for each tokenizer folder NAME: a header line
                    {"tokenizer": NAME, "pre": [...], "suf": [...]} (the ids that
                    add_special_tokens=True puts around every text), then one line per corpus item:
                    [ids] when decode(ids) gives back the text exactly, else
                    {"ids": [...], "dec": decode(ids)}; "dec_skip" is added when
                    decode(ids, skip_special_tokens=True) differs from "dec".
tests/test_tokenizer_corpus.c checks llmrt against these files.
"""
import argparse
import gzip
import json
import os
import random

# ---------------------------------------------------------------------------------------------
# Hand-written material
# ---------------------------------------------------------------------------------------------

SENTENCES = [
    # Latin script
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll find it's what we've wanted; they'd say I'M, YOU'LL, IT'S, WE'VE, THEY'D.",
    "Don\u2019t use curly quotes \u201clike this\u201d \u2014 or should you?",
    "Portez ce vieux whisky au juge blond qui fume. L'\u00e9l\u00e8ve a d\u00e9j\u00e0 mang\u00e9 \u00e0 l'h\u00f4tel.",
    "Falsches \u00dcben von Xylophonmusik qu\u00e4lt jeden gr\u00f6\u00dferen Zwerg. Stra\u00dfe, Ma\u00dfst\u00e4be.",
    "El ping\u00fcino Wenceslao hizo kil\u00f3metros bajo exhaustiva lluvia y fr\u00edo, a\u00f1oraba a su querido cachorro. \u00bfQu\u00e9? \u00a1S\u00ed!",
    "A ligeira raposa marrom ataca o c\u00e3o pregui\u00e7oso. Cora\u00e7\u00e3o, a\u00e7\u00facar, p\u00e3o.",
    "Quel vituperabile xenofobo zelante assaggia il whisky ed esclama: alleluja!",
    "Pa\u0144stwo, \u017c\u00f3\u0142\u0107, g\u0119\u015bl\u0105 ja\u017a\u0144. Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144.",
    "P\u0159\u00edli\u0161 \u017elu\u0165ou\u010dk\u00fd k\u016f\u0148 \u00fap\u011bl \u010f\u00e1belsk\u00e9 \u00f3dy.",
    "Pijamal\u0131 hasta ya\u011f\u0131z \u015fof\u00f6re \u00e7abucak g\u00fcvendi. \u0130stanbul, I\u011fd\u0131r, \u0131\u015f\u0131k.",
    "Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u: \u0111\u01b0\u1eddng, ng\u01b0\u1eddi, n\u01b0\u1edbc, hi\u1ec3u, tr\u01b0\u1eddng h\u1ecdc.",
    "\u00c1rv\u00edzt\u0171r\u0151 t\u00fck\u00f6rf\u00far\u00f3g\u00e9p. \u00deetta reddast, \u00e6\u00f0i \u00f6ld.",
    "Hyv\u00e4\u00e4 p\u00e4iv\u00e4\u00e4! Kuinka voit? Jo\u00f0 s\u00e6l. Mwalimu anasoma kitabu kizuri sana.",
    "\u1e62\u00e9 d\u00e1ad\u00e1ra ni? \u1eb8 k\u00fa \u00e0\u00e1r\u1ecd\u0300. Ngiyabonga kakhulu. Aloha k\u0101kou, mahalo nui.",
    "E\u0125o\u015dan\u011do \u0109iu\u0135a\u016dde. Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    # Cyrillic, Greek, Armenian, Georgian
    "\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0444\u0440\u0430\u043d\u0446\u0443\u0437\u0441\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a, \u0434\u0430 \u0432\u044b\u043f\u0435\u0439 \u0447\u0430\u044e.",
    "\u0427\u0443\u0454\u0448 \u0457\u0445, \u0434\u043e\u0446\u044e, \u0433\u0430? \u041a\u0443\u043c\u0435\u0434\u043d\u0430 \u0436 \u0442\u0438, \u043f\u0440\u043e\u0449\u0430\u0439\u0441\u044f \u0431\u0435\u0437 \u0491\u043e\u043b\u044c\u0444\u0456\u0432!",
    "\u039e\u03b5\u03c3\u03ba\u03b5\u03c0\u03ac\u03b6\u03c9 \u03c4\u03b7\u03bd \u03c8\u03c5\u03c7\u03bf\u03c6\u03b8\u03cc\u03c1\u03b1 \u03b2\u03b4\u03b5\u03bb\u03c5\u03b3\u03bc\u03af\u03b1. \u1f08\u03c1\u03c7\u1f74 \u03c3\u03bf\u03c6\u03af\u03b1\u03c2 \u1f21 \u03c4\u1fc6\u03c2 \u1f00\u03bb\u03b7\u03b8\u03b5\u03af\u03b1\u03c2 \u03b6\u03ae\u03c4\u03b7\u03c3\u03b9\u03c2.",
    "\u0532\u0561\u0580\u0587 \u0541\u0565\u0566, \u056b\u0576\u0579\u057a\u0565\u055e\u057d \u0565\u0584. \u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8 \u10d4\u10dc\u10d0 \u10eb\u10d0\u10da\u10d8\u10d0\u10dc \u10da\u10d0\u10db\u10d0\u10d6\u10d8\u10d0.",
    # RTL
    "\u05d3\u05d2 \u05e1\u05e7\u05e8\u05df \u05e9\u05d8 \u05d1\u05d9\u05dd \u05de\u05d0\u05d5\u05db\u05d6\u05d1 \u05d5\u05dc\u05e4\u05ea\u05e2 \u05de\u05e6\u05d0 \u05dc\u05d5 \u05d7\u05d1\u05e8\u05d4 \u05d0\u05d9\u05da \u05d4\u05e7\u05dc\u05d9\u05d8\u05d4.",
    "\u0635\u0650\u0641 \u062e\u064e\u0644\u0642\u064e \u062e\u064e\u0648\u062f\u0650 \u0643\u064e\u0645\u0650\u062b\u0644\u0650 \u0627\u0644\u0634\u064e\u0645\u0633\u0650 \u0625\u0650\u0630 \u0628\u064e\u0632\u064e\u063a\u064e\u062a \u2014 \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645! \u0661\u0662\u0663\u0664",
    "\u0628\u0647 \u0646\u0627\u0645 \u062e\u062f\u0627\u0648\u0646\u062f \u062c\u0627\u0646 \u0648 \u062e\u0631\u062f. \u06cc\u06a9 \u062f\u0648 \u0633\u0647 \u06f1\u06f2\u06f3\u06f4\u06f5. \u0627\u0631\u062f\u0648 \u0632\u0628\u0627\u0646 \u0628\u06c1\u062a \u062e\u0648\u0628\u0635\u0648\u0631\u062a \u06c1\u06d2\u06d4",
    # Indic
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u092c\u0939\u0941\u0924 \u0938\u0941\u0902\u0926\u0930 \u0939\u0948\u0964 \u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f, \u0936\u094d\u0930\u0940, \u0926\u094d\u0935\u093e\u0930\u093e\u0964 \u0967\u0968\u0969",
    "\u0986\u09ae\u09bf \u09ac\u09be\u0982\u09b2\u09be\u09af\u09bc \u0997\u09be\u09a8 \u0997\u09be\u0987\u0964 \u0ba4\u0bae\u0bbf\u0bb4\u0bcd \u0bae\u0bca\u0bb4\u0bbf \u0b87\u0ba9\u0bbf\u0bae\u0bc8\u0baf\u0bbe\u0ba9\u0ba4\u0bc1.",
    "\u0c24\u0c46\u0c32\u0c41\u0c17\u0c41 \u0c2d\u0c3e\u0c37. \u0c95\u0ca8\u0ccd\u0ca8\u0ca1 \u0cad\u0cbe\u0cb7\u0cc6. \u0d2e\u0d32\u0d2f\u0d3e\u0d33\u0d02 \u0d2d\u0d3e\u0d37. \u0a97\u0ac1\u0a9c\u0ab0\u0abe\u0aa4\u0ac0. \u0a2a\u0a70\u0a1c\u0a3e\u0a2c\u0a40.",
    "\u0dc3\u0dd2\u0d82\u0dc4\u0dbd \u0db7\u0dcf\u0dc2\u0dcf\u0dc0. \u0f56\u0f7c\u0f51\u0f0b\u0f61\u0f72\u0f42\u0f0d \u0f40\u0f41\u0f42\u0f44\u0f0b",
    # Southeast Asian
    "\u0e40\u0e1b\u0e47\u0e19\u0e21\u0e19\u0e38\u0e29\u0e22\u0e4c\u0e2a\u0e38\u0e14\u0e1b\u0e23\u0e30\u0e40\u0e2a\u0e23\u0e34\u0e10\u0e40\u0e25\u0e34\u0e28\u0e04\u0e38\u0e13\u0e04\u0e48\u0e32 \u0e01\u0e27\u0e48\u0e32\u0e1a\u0e23\u0e23\u0e14\u0e32\u0e1d\u0e39\u0e07\u0e2a\u0e31\u0e15\u0e27\u0e4c\u0e40\u0e14\u0e23\u0e31\u0e08\u0e09\u0e32\u0e19",
    "\u0e9e\u0eb2\u0eaa\u0eb2\u0ea5\u0eb2\u0ea7. \u1797\u17b6\u179f\u17b6\u1781\u17d2\u1798\u17c2\u179a\u17d4 \u1019\u103c\u1014\u103a\u1019\u102c\u1018\u102c\u101e\u102c\u1005\u1000\u102c\u1038\u104b",
    # CJK
    "\u6211\u80fd\u541e\u4e0b\u73bb\u7483\u800c\u4e0d\u4f24\u8eab\u4f53\u3002\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\uff01",
    "\u6211\u80fd\u541e\u4e0b\u73bb\u7483\u800c\u4e0d\u50b7\u8eab\u9ad4\u3002\u81fa\u7063\u7e41\u9ad4\u4e2d\u6587\uff0c\u6b61\u8fce\u5149\u81e8\u3002",
    "\u3044\u308d\u306f\u306b\u307b\u3078\u3068\u3061\u308a\u306c\u308b\u3092 \u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3001\u6f22\u5b57\u3092\u6df7\u305c\u305f\u6587\u7ae0\u3067\u3059\u3002\u30ac\u30ae\u30b0\u30b2\u30b4\uff01\uff8a\uff9d\uff76\uff78\uff76\uff80\uff76\uff85",
    "\ud0a4\uc2a4\uc758 \uace0\uc720\uc870\uac74\uc740 \uc785\uc220\ub07c\ub9ac \ub9cc\ub098\uc57c \ud558\uace0 \ud2b9\ubcc4\ud55c \uae30\uc220\uc740 \ud544\uc694\uce58 \uc54a\ub2e4. \ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
    "\u1828\u1823\u1829\u182d\u1823\u182f \u182a\u1822\u1834\u1822\u182d\u180c. \u13e3\u13b3\u13a9 \u13a6\u13ec\u13c2\u13af\u13cd\u13d7. \u1403\u14c4\u1483\u144e\u1450\u1466 \u140a\u1455\u1405\u14ef\u1585.",
    "\u12a0\u121b\u122d\u129b \u1241\u1295\u1243. \u2800\u2801\u2803\u2809\u2819\u2811 \u16a0\u16a2\u16a6\u16a8\u16b1\u16b2 \U00010330\U00010331\U00010332",
    # symbols and math
    "\u2200x\u2208\u211d: x\u00b2 \u2265 0 \u21d2 \u221a(x\u00b2) = |x|. \u222b\u2080^\u221e e^{-x} dx = 1. \u2211\u1d62 a\u1d62 \u2264 \u220f\u2c7c b\u2c7c",
    "\U0001d400\U0001d401\U0001d402 \U0001d7d8\U0001d7d9 \u2460\u2461\u2462 \u2160\u2161\u2162 \u00bd \u00bc \u2153 \u00b5m \u212b \u2126 \u00a9\u00ae\u2122 \u00a7\u00b6 \u2020\u2021 \u2030",
    "\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff34\uff45\uff58\uff54 \uff11\uff12\uff13 \uff01\uff1f \ufb01\ufb02 \u01c4 \u2474 \u33a1 \u2100",
    "\u20ac100, $5.99, \u00a320, \u00a5300, \u20b9500, \u20bf0.001, 50% off!!! #hashtag @user http://example.com/path?q=1&r=2#frag",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])\n",
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; i++)\n\t\tprintf(\"%s\\n\", argv[i]);\n\treturn 0;\n}\n",
    "const add = (a, b) => a + b;\nexport default function App() {\n  return <div className=\"app\">{add(1, 2)}</div>;\n}\n",
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Test</title></head>\n<body>\n  <p>Hello&nbsp;&amp;&lt;world&gt;</p>\n</body>\n</html>\n",
    "{\"name\": \"llmrt\", \"version\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true, \"c\": 1.5e-10}}",
    "SELECT u.id, COUNT(*) AS n FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at >= '2024-01-01' GROUP BY u.id HAVING n > 5;",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do\n  echo \"$f: $(wc -l < \"$f\")\"\ndone | sort -t: -k2 -n\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "\\begin{equation}\n  \\int_0^1 x^2\\,dx = \\frac{1}{3} \\quad \\text{and} \\quad \\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}\n\\end{equation}",
    "^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\\.)+$",
    "    indented with spaces\n\tindented with a tab\n  \t mixed\n\n\n\nmany blank lines\r\nwindows line\r\n\r\n",
    "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n\n    def __init__(self, *args, **kwargs) -> None:\n        super().__init__(*args, **kwargs)  # comment\n        self._x: dict[str, int] = {}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tch := make(chan int, 3)\n\tgo func() { ch <- 42 }()\n\tfmt.Println(<-ch)\n}\n",
    "diff --git a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n-int x = 1;\n+int x = 2;\n",
    "a==b!=c<=d>=e&&f||g->h::i...j//k/*l*/m++n--o<<=p>>=q**r",
]

SPECIAL_STRINGS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<pad>", "<bos>", "<eos>",
    "<start_of_turn>", "<end_of_turn>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_5|>", "<think>", "</think>",
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<unused12>", "<unused6241>", "<mask>",
    "[multimodal]", "<start_of_image>", "<image_soft_token>", "<|vision_start|>",
]

WS_PIECES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u3000", "\u2009", "\u200b",
             "\u2028", "\u0085", "\ufeff", "\u000b", "\u000c", " \n ", "\t\t", "\n\n\n\n", "\u180e",
             "\x1c", "\x1f", "\u2029", "\u202f", "\u205f", "\u1680"]

EMOJI = [
    "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f1fa\U0001f1f8", "\U0001f1ef\U0001f1f5", "1\ufe0f\u20e3",
    "\u2764\ufe0f", "\U0001f9d1\U0001f3ff\u200d\U0001f4bb", "\U0001f469\U0001f3fb\u200d\u2764\ufe0f\u200d\U0001f48b\u200d\U0001f468\U0001f3fe",
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "\u263a", "\u2603\ufe0e",
    "\U0001f926\u200d\u2642\ufe0f", "\U0001f408\u200d\u2b1b", "\U0001fae0", "\U0001f9ec",
]

COMBINING = [
    "e\u0301", "a\u0300\u0323", "n\u0303", "o\u0308\u0304", "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u0302\u0363l\u0310g\u0335o",
    "\u0915\u094d\u200d\u0937", "\u0627\u0644\u0639\u064e\u0631\u064e\u0628\u0650\u064a\u0651\u064e\u0629", "\u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd",
    "\u304b\u3099", "\u30cf\u309a", "A\u030a", "\u212b", "\u1e9b\u0323", "q\u0307\u0323", "\u0041\u0308\u0301",
    "\u0e01\u0e34\u0e4a", "s\u1df9\u1de5", "\u0f71\u1df9", "a\u0316\u08ca\u0301", "\u0915\u093c\u0c3c",
    "\U00016d40\U00016d67\U00016d68", "\U00013460\U00013461>Md", "\U0001e5d0\U0001e5f1\U0001e5fa", "\U00011390\U000113b8", "\u0f40\u0f7e\u0f80", "i\u0307", "\u0130", "\u03a3\u0342",
]

NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "123456789", "3.14159", "-2.5e-10", "1,000,000", "1.000.000,50",
    "2024-03-15", "15/03/2024", "12:34:56", "+1 (555) 123-4567", "0xDEADBEEF", "0b1010", "1e100",
    "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u0967\u0968\u0969", "\u2160\u2161\u2162", "98.6\u00b0F", "\u00bd",
    "v1.2.3-rc.4", "192.168.0.1", "IPv6 ::1 fe80::1%eth0", "3\u00d74=12", "10\u207b\u2076", "\u2082\u2083",
]

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D",
                "\u2019s", "''", "'", "n't", "o'clock", "rock'n'roll", "'tis", "y'all'd've"]

WORDS = ["the", "The", "THE", "of", "and", "tokenizer", "byte", "pair", "encoding", "hello", "world",
         "supercalifragilisticexpialidocious", "naïve", "café", "über", "straße", "Ünïcödé", "ñandú",
         "日本", "中文", "한국어", "русский", "ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย",
         "x", "I", "a", "_", "__init__", "camelCase", "snake_case", "kebab-case", "PascalCase",
         "URL", "https://huggingface.co", "foo@bar.com", "C++", "C#", "F#", ".NET", "node.js",
         "--flag", "-x", "$HOME", "%d", "{}", "[]", "()", "<>", "...", "!!!", "???", "—", "–", "…"]


def rand_text(rng, pools, n):
    parts = []
    for _ in range(n):
        pool = rng.choice(pools)
        parts.append(rng.choice(pool))
        parts.append(rng.choice([" ", " ", " ", "", "\n", "  ", "\t", ", ", ". ", "\r\n", rng.choice(WS_PIECES)]))
    return "".join(parts)


# Unicode ranges to sample random characters from (no surrogates)
RANGES = [(0x20, 0x7E), (0x00, 0x1F), (0x7F, 0xFF), (0x100, 0x24F), (0x250, 0x2AF), (0x300, 0x36F),
          (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F),
          (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F),
          (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF),
          (0x2500, 0x257F), (0x2600, 0x26FF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
          (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F),
          (0xFF00, 0xFFEF), (0xFFF0, 0xFFFD), (0x10000, 0x1007F), (0x1D400, 0x1D7FF), (0x1F300, 0x1F6FF),
          (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0x1DC0, 0x1DFF), (0x1AB0, 0x1AFF), (0x13460, 0x13480),
          (0x1E5D0, 0x1E5FF), (0x10D40, 0x10D8F), (0x16D40, 0x16D7F), (0x11380, 0x113FF), (0x2EBF0, 0x2EC10),
          (0x890, 0x8FF), (0xF70, 0xF8F), (0x1C80, 0x1C8F), (0x180B, 0x180F), (0xE0000, 0xE007F), (0xF0000, 0xF00FF), (0x10FF00, 0x10FFFF)]


def rand_chars(rng, n):
    out = []
    r = rng.choice(RANGES)
    for _ in range(n):
        if rng.random() < 0.3:
            r = rng.choice(RANGES)
        out.append(chr(rng.randint(*r)))
    return "".join(out)


def build_corpus():
    rng = random.Random(20261126)
    items = []
    add = items.append
    for s in SENTENCES + CODE:
        add(s)
        add(" " + s)
        add(s.upper())
        add(s.lower() + "\n")
    for s in SPECIAL_STRINGS:
        add(s)
        add(" " + s + " ")
        add("Hello" + s + "world")
        add("Hello " + s + " world")
        add(s + s)
        add(s + "\n" + s[:-1])  # a broken copy must not match
        add("<|im_start|>user\n" + s + " hi<|im_end|>\n<|im_start|>assistant\n")
        add("<start_of_turn>user\nWhat is " + s + "?<end_of_turn>\n<start_of_turn>model\n")
    for w in WS_PIECES:
        for k in (1, 2, 3, 7, 16):
            add(w * k)
            add("a" + w * k + "b")
            add(w * k + "word" + w * k)
    for k in list(range(1, 33)) + [40, 64, 100, 257]:
        add(" " * k)
        add("x" + " " * k + "y")
        add("\n" * (k % 20 + 1) + "text" + "\t" * (k % 9))
        add("    " * (k % 12) + "return x;\r\n" * (k % 4 + 1))
    for e in EMOJI:
        add(e)
        add("I " + e + " it" + e + e)
        add(e * 5)
    for c in COMBINING:
        add(c)
        add("word" + c + "word " + c)
    for nnum in NUMBERS:
        add(nnum)
        add("Total: " + nnum + " units")
    for k in range(1, 41):
        add("".join(str((i * 7 + k) % 10) for i in range(k)))
    for c in CONTRACTIONS:
        add("it" + c)
        add("I" + c + " go" + c + " " + c + c)
    for w in WORDS:
        add(w)
        add(" " + w)
        add(w + w + " " + w.upper())
    # random mixtures
    pools = [SENTENCES, CODE, SPECIAL_STRINGS, WS_PIECES, EMOJI, COMBINING, NUMBERS, CONTRACTIONS, WORDS,
             WORDS, WORDS]
    for i in range(900):
        add(rand_text(rng, pools, rng.randint(1, 12)))
    for i in range(300):
        add(rand_chars(rng, rng.randint(1, 60)))
    for i in range(60):
        add(rand_text(rng, [WORDS, CONTRACTIONS, NUMBERS], 5) + rand_chars(rng, 8) + rand_text(rng, pools, 3))
    # long inputs
    add(" ".join(SENTENCES) * 3)
    add("\n\n".join(CODE) * 2)
    add("a" * 3000)
    add("ab" * 1500 + "c")
    add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4000)))
    add(" " * 3000 + "x")
    add("1234567890" * 200)
    add("\U0001f600" * 500)
    add("\u6f22" * 2000)
    add("".join(rng.choice(EMOJI) for _ in range(300)))
    add(rand_chars(rng, 3000))
    add(rand_text(rng, pools, 1500))
    add("<|im_start|>" * 100 + "<s>" * 100)
    add("\u2581" * 200 + " \u2581 \u2581\u2581" * 50)
    # raw bytes that are not valid UTF-8
    raw = [b"\xff", b"abc\xffdef", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(", b"\xf0\x9f\x98", b"\xf0\x9f\x98x",
           b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80", b"\x80\x80\x80",
           b"caf\xe9", b"\xe0\x80\xaf", b"\xef\xbf\xbe ok", b"Hello \xf0\x9f\x91 world \xfe\xfe",
           b"<|im_start|>\xff<|im_end|>", b"\xe6\x97\xa5\xe6\x9c", b"a\x00b"]
    for b in raw:
        add({"hex": b.hex()})
    # dedupe, keep order
    seen, out = set(), []
    for it in items:
        key = json.dumps(it, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def text_of(item):
    if isinstance(item, dict):
        return bytes.fromhex(item["hex"]).decode("utf-8", errors="replace")
    return item


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared/tokenizers")
    ap.add_argument("--out", default="tests/data/tokenizer")
    a = ap.parse_args()
    from tokenizers import Tokenizer

    corpus = build_corpus()
    os.makedirs(a.out, exist_ok=True)
    with gzip.GzipFile(os.path.join(a.out, "corpus.jsonl.gz"), "wb", mtime=0) as f:
        for it in corpus:
            f.write((json.dumps(it, ensure_ascii=False) + "\n").encode())
    print(f"corpus: {len(corpus)} items, {sum(len(text_of(i).encode()) for i in corpus)} bytes")
    names = sorted(n for n in os.listdir(a.shared) if os.path.isfile(os.path.join(a.shared, n, "tokenizer.json")))
    for name in names:
        tok = Tokenizer.from_file(os.path.join(a.shared, name, "tokenizer.json"))
        texts = [text_of(i) for i in corpus]
        plain = tok.encode_batch(texts, add_special_tokens=False)
        special = tok.encode_batch(texts, add_special_tokens=True)
        empty = tok.encode("", add_special_tokens=True).ids
        pre, suf = empty, []  # single-sequence templates put everything before or after A
        lines = []
        for text, p, s in zip(texts, plain, special):
            ids = p.ids
            # find the template's prefix/suffix from the first text with ids
            if ids and s.ids != ids:
                k = s.ids.index(ids[0]) if ids[0] in s.ids else 0
                pre, suf = s.ids[:k], s.ids[k + len(ids):]
                break
        for text, p, s in zip(texts, plain, special):
            ids = p.ids
            assert s.ids == pre + ids + suf, (name, text, s.ids, ids)
            dec = tok.decode(ids, skip_special_tokens=False)
            dec_skip = tok.decode(ids, skip_special_tokens=True)
            if dec == text and dec_skip == dec:
                lines.append(json.dumps(ids))
            else:
                obj = {"ids": ids, "dec": dec}
                if dec_skip != dec:
                    obj["dec_skip"] = dec_skip
                lines.append(json.dumps(obj, ensure_ascii=False))
        with gzip.GzipFile(os.path.join(a.out, name + ".jsonl.gz"), "wb", mtime=0) as f:
            f.write((json.dumps({"tokenizer": name, "pre": pre, "suf": suf}) + "\n").encode())
            for ln in lines:
                f.write((ln + "\n").encode())
        print(f"{name}: {sum(len(p.ids) for p in plain)} ids, pre={pre} suf={suf}")


if __name__ == "__main__":
    main()
