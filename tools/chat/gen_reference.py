#!/usr/bin/env python3
"""Generate the chat-template parity references for crates/chat.

Run by hand from the repository root:

    /work/venv/bin/python tools/chat/gen_reference.py

Needs `transformers` (5.x; references made with 5.24.0) and `gguf` in the
venv: `/work/venv/bin/pip install transformers`. It renders every template in testdata/templates/*.jinja and the
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


# Small templates that pin down one Python/Jinja2 behaviour each; rendered
# with the same compiled environment as the chat templates, with `vars` as
# the template variables.
D = {"b": 2, "a": 1, "text": "x", "items": [1, 2]}
L = [{"name": "x", "role": "user", "n": 3}, {"name": "y", "role": "tool", "n": 1}, {"name": "z", "role": "user", "n": 2}]
SNIPPETS = [
    ("print_scalars", "{{ true }} {{ false }} {{ none }} {{ n }} {{ 3 }} {{ -7 }} {{ missing }}|", {"n": None}),
    ("print_floats", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e-5 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ 2 ** 10 }} {{ -7 % 3 }} {{ 1 / 3 }} {{ f }}", {"f": 2.50}),
    ("print_containers", "{{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v', 'q': \"it's\"} }} {{ d }} {{ (1, 2) }} {{ (1,) }}", {"d": D}),
    ("concat_tilde", "{{ 'a' ~ 1 ~ 1.5 ~ 'b' ~ missing }}", {}),
    ("concat_plus", "{{ 'a' + 'b' }}{{ [1] + [2] }}", {}),
    ("concat_str_int_error", "{{ 'a' + 1 }}", {}),
    ("strip_family", "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ t.strip('x') }}][{{ t.lstrip('xa') }}][{{ t.rstrip('x') }}]", {"s": "  \t hi \n ", "t": "xxaxbxx"}),
    ("split_family", "{{ s.split() }} {{ s.split(' ') }} {{ s.split(None, 1) }} {{ c.split(',') }} {{ c.split(',', 1) }} {{ c.rsplit(',', 1) }} {{ ''.split() }}", {"s": " a  b c ", "c": "1,,2,3"}),
    ("affixes", "{{ s.startswith('ab') }} {{ s.startswith(('x', 'a')) }} {{ s.endswith('yz') }} {{ s.endswith(('q', 'r')) }} {{ s.startswith('') }}", {"s": "abcxyz"}),
    ("affix_list_error", "{{ s.endswith(['q']) }}", {"s": "abcxyz"}),
    ("case_methods", "{{ s.upper() }} {{ s.lower() }} {{ s.title() }} {{ s.capitalize() }} {{ s|title }} {{ s|capitalize }} {{ s|upper }} {{ s|lower }}", {"s": "hELLO wORLD it's x-ray"}),
    ("find_count_replace", "{{ s.find('b') }} {{ s.rfind('b') }} {{ s.find('q') }} {{ s.count('b') }} {{ s.replace('b', 'B') }} {{ s.replace('b', 'B', 1) }} {{ s|replace('a', '_') }}", {"s": "ébcabcb"}),
    ("join_method_and_filter", "{{ '-'.join(l) }} {{ l|join(', ') }} {{ m|join('|') }} {{ people|join(',', attribute='name') }}", {"l": ["a", "b"], "m": [1, True, None, 2.5], "people": L}),
    ("splitlines_format", "{{ s.splitlines() }} {{ s.splitlines(True) }} {{ '{}-{}'.format('a', 1) }}", {"s": "a\nb\r\nc\n"}),
    ("slicing", "{{ s[::-1] }} {{ s[1:3] }} {{ l[-2:] }} {{ l[::2] }} {{ l[::-1] }} {{ s[-1] }} {{ l[0] }}", {"s": "héllo", "l": [1, 2, 3, 4, 5]}),
    ("in_operator", "{{ 'ell' in 'hello' }} {{ 2 in [1, 2] }} {{ 'a' in d }} {{ 'z' in d }} {{ 'x' not in 'abc' }}", {"d": D}),
    ("tests_on_types", "{% for v in vals %}{{ v is string }}{{ v is mapping }}{{ v is sequence }}{{ v is iterable }}{{ v is number }}{{ v is integer }}{{ v is float }}{{ v is boolean }}{{ v is none }}{{ v is defined }};{% endfor %}{{ missing is sequence }}{{ missing is iterable }}{{ missing is defined }}{{ missing is undefined }}", {"vals": ["s", {"a": 1}, [1], None, 3, 2.5, True]}),
    ("true_false_tests", "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ none is none }}", {}),
    ("filters_basic", "{{ s|trim }}|{{ s|length }}|{{ l|first }}|{{ l|last }}|{{ l|length }}|{{ d|length }}|{{ l|min }}|{{ l|max }}|{{ l|sum }}|{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ l|list }}|{{ 'ab'|list }}", {"s": "  pad é  ", "l": [3, 1, 2]}),
    ("filter_trim_chars", "{{ s|trim('x') }}|{{ 5|trim }}|{{ missing|trim }}|", {"s": "xxhixx"}),
    ("filters_default", "{{ missing|default('d') }} {{ n|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ n|default('d', true) }} {{ missing|d('x') }}", {"n": None}),
    ("filters_generators_list", "{{ people|map(attribute='name')|list }} {{ people|selectattr('role', 'equalto', 'user')|list|length }} {{ people|rejectattr('role', 'equalto', 'user')|map(attribute='name')|join(',') }} {{ [1, 'a', 2]|select('string')|list }} {{ [1, 2, 3, 4]|reject('even')|list }} {{ ['a', 'A', 'b']|unique|list }} {{ people|map(attribute='n')|sum }}", {"people": L}),
    ("generator_truthy", "{% if [1]|select('string') %}truthy{% else %}falsy{% endif %} {% if [] %}t{% else %}f{% endif %}", {}),
    ("generator_tojson_error", "{{ [1, 2]|map('string')|tojson }}", {}),
    ("generator_length_error", "{{ [1, 2]|select('odd')|length }}", {}),
    ("filters_dicts", "{{ d|dictsort }} {{ d|dictsort(reverse=true) }} {{ d|items|list }} {{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d['items'] }}", {"d": D}),
    ("loop_over_dict", "{% for k in d %}{{ k }},{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k, v in d|items %}{{ k }}{% endfor %}", {"d": D}),
    ("loop_vars", "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}]{{ loop.cycle('o', 'e') }};{% endfor %}", {"l": ["a", "b", "c"]}),
    ("loop_controls", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}{% for x in [] %}no{% else %}empty{% endfor %}", {}),
    ("loop_filter_and_recursive", "{% for x in range(6) if x is odd %}{{ x }}{% endfor %}|{% for n in tree recursive %}({{ n.v }}{% if n.c %}{{ loop(n.c) }}{% endif %}){% endfor %}", {"tree": [{"v": 1, "c": [{"v": 2, "c": []}, {"v": 3}]}, {"v": 4}]}),
    ("namespace_in_loop", "{% set ns = namespace(total=0, names=[]) %}{% for p in people %}{% set ns.total = ns.total + p.n %}{% set ns.names = ns.names + [p.name] %}{% endfor %}{{ ns.total }} {{ ns.names }}", {"people": L}),
    ("scoping", "{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}{% if true %}{% set y = 3 %}{% endif %}{{ y }}", {}),
    ("macros", "{% macro greet(name, greeting='Hi') %}{{ greeting }} {{ name }}{% endmacro %}{{ greet('a') }} {{ greet('b', greeting='Yo') }} {% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inner{% endcall %}", {}),
    ("macro_result_concat", "{% macro m() %}<{{ 1 }}>{% endmacro %}{{ m() + '&' }}{% set s = m() %}{{ s ~ '&' }}", {}),
    ("set_block_and_filter_block", "{% set b %}  Block {{ 1 }} {% endset %}[{{ b }}][{{ b|trim }}]{% filter upper %}up {{ 'x' }}{% endfilter %}", {}),
    ("inline_if", "{{ 'a' if t else 'b' }}{{ 'c' if f }}|{{ 'd' if none else 'e' }}", {"t": True, "f": False}),
    ("tuple_unpacking", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% for x, y in [[1, 2], [3, 4]] %}{{ x * y }}{% endfor %}", {}),
    ("dict_literal_and_global", "{{ dict(a=1, b='x') }} {{ {'a': 1}|tojson }} {{ dict(a=1)|length }}", {}),
    ("range_forms", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }}", {}),
    ("printf_format_filter", "{{ '%s-%d'|format('a', 3) }} {{ '%05.2f'|format(3.14159) }}", {}),
    ("tojson_variants", "{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ u|tojson }}|{{ u|tojson(ensure_ascii=true) }}|{{ 1.0|tojson }}|{{ none|tojson }}|{{ [1, [2, {}]]|tojson(indent=1) }}|{{ 'a'|tojson(indent='\t') }}", {"d": D, "u": "é<>&'\"\n\u0001😀"}),
    ("tojson_undefined_error", "{{ missing|tojson }}", {}),
    ("indent_filter", "[{{ s|indent }}][{{ s|indent(2, true) }}][{{ s|indent(first=true, blank=true) }}][{{ s|indent('> ') }}]", {"s": "a\n\nb\r\nc\n"}),
    ("int_float_string_filters", "{{ '12'|int }} {{ 'abc'|int }} {{ 3.7|int }} {{ '3.5'|float }} {{ 'x'|float }} {{ 3|string + 'x' }} {{ [1, 'a']|string }} {{ none|string }} {{ true|string }} {{ '0x1A'|int(0, 16) }}", {}),
    ("round_abs", "{{ 2.5|round }} {{ 3.14159|round(2) }} {{ 2.5|round(0, 'floor') }} {{ -3|abs }} {{ 7|round }}", {}),
    ("escape_and_safe", "{{ '<a href=\"x\">&</a>'|e }} {{ '<b>'|safe }} {{ '<b>'|escape|length }}", {}),
    ("markup_plus_escapes", "{{ 'x'|safe + '<&>' }}", {}),
    ("undefined_attribute_chain_error", "{{ d.missing.deeper }}", {"d": D}),
    ("undefined_loop_and_print", "[{{ missing }}]{% for x in missing %}x{% endfor %}[{{ d.missing }}][{{ d['nope'] }}][{{ l[10] }}]", {"d": D, "l": [1]}),
    ("none_attribute_is_undefined", "{{ n.attr is defined }}{{ n['k'] is defined }}", {"n": None}),
    ("comparisons", "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 1 != '1' }} {{ none == none }} {{ 2 > 1 and not false }} {{ 0 or 'x' }} {{ 1 and 'y' }}", {}),
    ("string_repeat_and_length", "{{ 'ab' * 3 }} {{ 3 * '-' }} {{ s|length }} {{ s|wordcount }}", {"s": "héllo wörld 😀"}),
    ("strftime", "{{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%d %B %Y') }}|{{ strftime_now('%A %a %b %j %I %p %y %%') }}|{{ strftime_now('%e') }}", {}),
    ("raise_exception_message", "{% if true %}{{ raise_exception('Only user and assistant roles are supported! Got: ' ~ 'tool') }}{% endif %}", {}),
    ("raise_exception_non_string", "{{ raise_exception(42) }}", {}),
    ("whitespace_control", "<{% if true %}\n  a\n{% endif %}\n  {%- if true -%}\n b \n{%- endif %}\n    {% for x in [1, 2] %}\n{{ x }}\n    {% endfor %}\n>{{- ' y ' -}}  <{#- c -#}  >\n", {}),
    ("lstrip_blocks_plus", "a\n    {%+ if true %}b{% endif %}\n  {# note #}\nc", {}),
    ("trailing_newline_dropped", "line\n", {}),
    ("raw_block", "{% raw %}{{ not rendered }}{% endraw %}", {}),
    ("unknown_filter_error", "{% if false %}{{ x|from_json }}{% endif %}ok{{ y|from_json }}", {"y": "{}"}),
    ("list_append_error", "{% set l = [] %}{{ l.append(1) }}", {}),
    ("dict_update_error", "{% set d = {} %}{{ d.update({'a': 1}) }}", {}),
    ("dict_views", "{{ d.items() }} {{ d.keys() }} {{ d.values()|list }} {{ d.items()|length }} {% if e.items() %}t{% else %}f{% endif %} {% for k, v in d.items() %}{{ k }}{% endfor %}", {"d": D, "e": {}}),
    ("dict_view_tojson_error", "{{ d.keys()|tojson }}", {"d": D}),
    ("concat_tilde_python_spelling", "{{ 'x' ~ true ~ none ~ [1, 'a'] }}", {}),
    ("generator_single_pass", "{% set g = [1, 2, 3]|select('odd') %}{% for x in g %}{{ x }}{% endfor %}|{% for x in g %}{{ x }}{% endfor %}", {}),
    ("dict_attribute_prefers_method", "{{ d.items is callable }}", {"d": D}),
    ("namespace_underscore_init_error", "{% set ns = namespace(_x=1) %}{{ ns._x }}", {}),
    ("namespace_underscore_set_error", "{% set ns = namespace() %}{% set ns._y = 1 %}{{ ns._y }}", {}),
    ("loop_changed_depth", "{% for x in [1, 1, 2] %}{% if loop.changed(x) %}{{ x }}{% endif %}{% endfor %}|{% for a in [[1]] recursive %}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}", {}),
    ("percent_operator_formatting", "{{ '%s=%d' % ('a', 3) }}", {}),
    ("batch_slice_groupby", "{{ l|batch(2)|list }} {{ l|slice(2)|list }} {% for g in people|groupby('role') %}{{ g.grouper }}:{{ g.list|length }};{% endfor %}", {"l": [1, 2, 3], "people": L}),
    ("selectattr_forms", "{{ people|selectattr('name', 'in', ['x', 'z'])|map(attribute='n')|list }} {{ people|selectattr('n')|list|length }} {{ ['a ', ' b']|map('trim')|list }} {{ ['a', 'b']|map('upper')|join }} {{ people|map(attribute='missing', default='-')|list }}", {"people": L}),
    ("test_in_and_divisible", "{{ 'a' is in ['a'] }} {{ 6 is divisibleby 3 }} {{ 'AB' is upper }} {{ 3 is gt 2 }} {{ 'x' is eq 'x' }}", {}),
    ("minijinja_only_filter_error", "{{ 'a b'|split }}", {}),
    ("minijinja_only_test_error", "{{ 'ab' is startingwith 'a' }}", {}),
    ("message_content_parts", "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{% if p.type == 'text' %}{{ p.text }}{% endif %}{% endfor %}{% endif %}{% endfor %}", {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "yo"}]}),
]


def snippet_case(name, src, variables):
    try:
        out = ctu._compile_jinja_template(src).render(**json.loads(json.dumps(variables)))
        return {"name": name, "template": src, "vars": variables, "output": out}
    except Exception as e:  # noqa: BLE001
        msg = e.message if isinstance(e, jinja2.TemplateError) else str(e)
        return {"name": name, "template": src, "vars": variables, "error": {"type": type(e).__name__, "message": str(msg) if msg is not None else ""}}


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
            "error": {"type": type(e).__name__, "message": str(msg) if msg is not None else ""},
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

    snippets = [snippet_case(*sn) for sn in SNIPPETS]
    with open(os.path.join(OUT, "snippets.json"), "w", encoding="utf-8") as fh:
        json.dump(snippets, fh, ensure_ascii=False, indent=1)
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
