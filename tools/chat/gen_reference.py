#!/usr/bin/env python3
"""Generate the chat-template parity references for crates/chat.

Run by hand from the repository root:

    /work/venv/bin/python tools/chat/gen_reference.py

It renders every template in testdata/templates/*.jinja and the
`tokenizer.chat_template` embedded in each testdata/vocab/*.gguf against a
fixed set of conversations, using the Hugging Face `transformers` rendering
path itself (`render_jinja_template`, the function behind
`PreTrainedTokenizerBase.apply_chat_template`), and writes:

    crates/chat/tests/reference/conversations.json   the inputs
    crates/chat/tests/reference/expected/<name>.json the renders or raised errors

Steps reproduced from `apply_chat_template` (transformers 5.x,
tokenization_utils_base.py) because we call the lower-level function:
  * `_normalize_chat_messages` drops keys whose value is None;
  * an empty conversation, or continue_final_message together with
    add_generation_prompt, is a ValueError;
  * template kwargs are `{**special_tokens_map, **kwargs}`; we pass only
    bos_token / eos_token as the special-token map.

`strftime_now` reads `datetime.now()` from the transformers module; it is
replaced by a fixed clock (CLOCK below) so the references are deterministic.
"""

import datetime as _dt
import glob
import json
import os
import sys
import traceback

import gguf
import jinja2
import transformers
import transformers.utils.chat_template_utils as ctu

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "crates", "chat", "tests", "reference")

# 2025-03-14 09:26:53, a Friday (so %a/%A/%j/%p are all exercised).
CLOCK = _dt.datetime(2025, 3, 14, 9, 26, 53)


class FixedClock(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return CLOCK


ctu.datetime = FixedClock

# Bos/eos used for the stand-alone .jinja templates (they come without a tokenizer).
DEFAULT_BOS = "<s>"
DEFAULT_EOS = "</s>"

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
                    "unit": {
                        "type": "string",
                        "enum": ["celsius", "fahrenheit"],
                        "description": "Temperature unit",
                    },
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web and return the top results.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for"},
                    "max_results": {"type": "integer", "default": 5},
                    "threshold": {"type": "number", "default": 1.0},
                    "weight": {"type": "number", "default": 0.25},
                    "sites": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Only search these sites",
                    },
                },
                "required": ["query"],
            },
        },
    },
]

SYSTEM = "You are a helpful assistant."

CONVERSATIONS = [
    {
        "name": "system_user",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "user_only_no_generation_prompt",
        "messages": [{"role": "user", "content": "Hello!"}],
        "add_generation_prompt": False,
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Hi, who are you?"},
            {"role": "assistant", "content": "I am an assistant. How can I help?"},
            {"role": "user", "content": "Tell me a joke.\nKeep it short."},
        ],
        "add_generation_prompt": True,
        "kwargs": {"date_string": "26 Jul 2024"},
    },
    {
        "name": "assistant_prefill",
        "messages": [
            {"role": "user", "content": "Write a haiku about rain."},
            {"role": "assistant", "content": "Soft rain on the roof"},
        ],
        "add_generation_prompt": False,
        "continue_final_message": True,
    },
    {
        "name": "assistant_last_no_continue",
        "messages": [
            {"role": "user", "content": "Say yes."},
            {"role": "assistant", "content": "Yes."},
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "tools_available",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What's the weather in Paris?"},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tool_call_roundtrip",
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": {"city": "Paris", "unit": "celsius"},
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "name": "get_weather",
                "content": "{\"temperature\": 18, \"condition\": \"sunny\"}",
            },
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tool_call_string_arguments",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Search for rust minijinja"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {
                            "name": "search",
                            "arguments": "{\"query\": \"rust minijinja\", \"max_results\": 3}",
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": "1. minijinja on crates.io"},
            {"role": "assistant", "content": "The top result is minijinja on crates.io."},
            {"role": "user", "content": "Thanks!"},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "parallel_tool_calls",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Weather in Paris and in Tokyo?", "name": "alice"},
            {
                "role": "assistant",
                "content": "Let me check both.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "celsius"}},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "name": "get_weather", "content": "18 C, sunny"},
            {"role": "tool", "tool_call_id": "call_b", "name": "get_weather", "content": "22 C, rain"},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "documents",
        "messages": [{"role": "user", "content": "What does the report say about revenue?"}],
        "documents": [
            {"title": "Q3 report", "text": "Revenue grew 12% to $4.2M."},
            {"title": "Q2 report", "text": "Revenue was flat."},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "reasoning_thinking_on",
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {
                "role": "assistant",
                "reasoning_content": "The user asks a sum. 2+2=4.",
                "content": "4",
            },
            {"role": "user", "content": "And 3+3?"},
        ],
        "add_generation_prompt": True,
        "kwargs": {"enable_thinking": True},
    },
    {
        "name": "content_parts_unicode_thinking_off",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Réponds en français, s'il te plaît."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Quote: \"ünïcödé\" — 日本語 😀\tand a tab"},
                    {"type": "text", "text": "Second part <b>&amp;</b>"},
                ],
            },
        ],
        "add_generation_prompt": True,
        "kwargs": {"enable_thinking": False},
    },
]


def gguf_template(path):
    """(template, bos, eos) from a GGUF's metadata, or None if it has no template."""
    r = gguf.GGUFReader(path)
    f = r.fields.get("tokenizer.chat_template")
    if f is None:
        return None
    tmpl = f.contents()
    tokens = r.fields["tokenizer.ggml.tokens"].contents()

    def tok(key):
        fld = r.fields.get(key)
        if fld is None:
            return None
        i = int(fld.contents())
        return tokens[i] if 0 <= i < len(tokens) else None

    return tmpl, tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id")


def render(template, conv, bos, eos):
    messages = ctu._normalize_chat_messages(json.loads(json.dumps(conv["messages"])))
    agp = conv.get("add_generation_prompt", False)
    cfm = conv.get("continue_final_message", False)
    if not messages:
        raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    if cfm and agp:
        raise ValueError("continue_final_message and add_generation_prompt are not compatible.")
    special = {}
    if bos is not None:
        special["bos_token"] = bos
    if eos is not None:
        special["eos_token"] = eos
    kwargs = {**special, **conv.get("kwargs", {})}
    tools = conv.get("tools")
    documents = conv.get("documents")
    rendered, _ = ctu.render_jinja_template(
        conversations=[messages],
        tools=json.loads(json.dumps(tools)) if tools is not None else None,
        documents=json.loads(json.dumps(documents)) if documents is not None else None,
        chat_template=template,
        continue_final_message=cfm,
        add_generation_prompt=agp,
        **kwargs,
    )
    return rendered[0]


def case(template, conv, bos, eos):
    try:
        return {"conversation": conv["name"], "output": render(template, conv, bos, eos)}
    except Exception as e:  # noqa: BLE001 - every failure is a recorded outcome
        # Only the exact base class TemplateError comes from raise_exception();
        # jinja2's own failures are subclasses (UndefinedError, TemplateSyntaxError, ...).
        msg = e.message if isinstance(e, jinja2.TemplateError) else str(e)
        return {
            "conversation": conv["name"],
            "error": {"type": type(e).__name__, "message": msg if msg is not None else ""},
        }


def main():
    os.makedirs(os.path.join(OUT, "expected"), exist_ok=True)
    for old in glob.glob(os.path.join(OUT, "expected", "*.json")):
        os.remove(old)
    with open(os.path.join(OUT, "conversations.json"), "w", encoding="utf-8") as fh:
        json.dump(
            {"clock": CLOCK.isoformat(), "conversations": CONVERSATIONS}, fh, ensure_ascii=False, indent=1
        )
        fh.write("\n")

    sources = []
    for path in sorted(glob.glob(os.path.join(ROOT, "testdata", "templates", "*.jinja"))):
        with open(path, encoding="utf-8") as fh:
            sources.append((os.path.basename(path)[: -len(".jinja")], path, fh.read(), DEFAULT_BOS, DEFAULT_EOS))
    for path in sorted(glob.glob(os.path.join(ROOT, "testdata", "vocab", "*.gguf"))):
        got = gguf_template(path)
        if got is not None:
            tmpl, bos, eos = got
            sources.append(("gguf-" + os.path.basename(path)[: -len(".gguf")], path, tmpl, bos, eos))

    n_ok = n_err = 0
    for name, path, tmpl, bos, eos in sources:
        cases = [case(tmpl, conv, bos, eos) for conv in CONVERSATIONS]
        n_ok += sum("output" in c for c in cases)
        n_err += sum("error" in c for c in cases)
        doc = {
            "template": os.path.relpath(path, ROOT),
            "bos_token": bos,
            "eos_token": eos,
            "cases": cases,
        }
        with open(os.path.join(OUT, "expected", name + ".json"), "w", encoding="utf-8") as fh:
            json.dump(doc, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
    print(
        f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}: "
        f"{len(sources)} templates x {len(CONVERSATIONS)} conversations: {n_ok} renders, {n_err} errors",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
