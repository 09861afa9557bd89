"""End-to-end: the official `openai` Python SDK against a real `hearth serve`.

The server is the release binary (HEARTH_BIN) serving a random-weight model
with the real Qwen2 vocabulary (HEARTH_TEST_MODEL), both prepared by
scripts/e2e.sh. Random weights give gibberish: these tests check the
protocol (shapes, usage, determinism, errors, auth, limits, concurrency,
disconnects, grammar-constrained JSON and tool calls), not the text.
"""

import concurrent.futures
import json
import os
import re
import subprocess
import threading
import time
import urllib.request

import openai
import pytest

API_KEY = "sk-e2e-test-key"
PARALLEL = 4


# The MiniLM folder scripts/fetch-minilm.sh installs; when present the
# server also answers /v1/embeddings.
MINILM = os.environ.get("HEARTH_MINILM", "models/all-MiniLM-L6-v2")
HAVE_MINILM = os.path.isfile(os.path.join(MINILM, "config.json"))


def _start(extra_args):
    binary = os.environ.get("HEARTH_BIN", "target/release/hearth")
    model = os.environ["HEARTH_TEST_MODEL"]
    embed = ["--embed-model", MINILM] if HAVE_MINILM else ["--no-embeddings"]
    proc = subprocess.Popen(
        [binary, "serve", "--model", model, "--port", "0", "--threads", "2", "--parallel", str(PARALLEL)]
        + embed
        + extra_args,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The server prints its address before loading the model.
    line = proc.stderr.readline()
    m = re.search(r"listening on (http://\S+)", line)
    assert m, f"unexpected first line from hearth serve: {line!r}"
    base = m.group(1)
    # Drain stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + "/health") as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        assert proc.poll() is None, "hearth serve exited while loading"
        assert time.monotonic() < deadline, "the model did not load in time"
        time.sleep(0.1)
    return proc, base


@pytest.fixture(scope="session")
def server():
    proc, base = _start(["--api-key", API_KEY, "--queue", "64"])
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def metrics(base):
    req = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_for(base, name, pred):
    for _ in range(600):
        v = metrics(base).get(name)
        if v is not None and pred(v):
            return v
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached the expected value")


MSG = [{"role": "user", "content": "Write a short poem about the sea."}]
GREEDY = {"temperature": 0, "extra_body": {"ignore_eos": True}}


def test_models(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert len(ids) == (2 if HAVE_MINILM else 1)
    assert ("all-MiniLM-L6-v2" in ids) == HAVE_MINILM
    assert client.models.retrieve(ids[0]).id == ids[0]


@pytest.mark.skipif(not HAVE_MINILM, reason="MiniLM not installed (scripts/fetch-minilm.sh)")
def test_embeddings(client):
    texts = ["How do I reset my password?", "I forgot my password and cannot log in.", "Quarterly revenue rose 8%."]
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    assert [d.index for d in r.data] == [0, 1, 2]
    vecs = [d.embedding for d in r.data]
    assert all(len(v) == 384 for v in vecs)
    # sentence-transformers normalises MiniLM's vectors.
    for v in vecs:
        assert abs(sum(x * x for x in v) - 1.0) < 1e-4
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))
    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2]) + 0.2
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens
    # The SDK asks for base64 by default when numpy is absent; force both forms
    # and check they carry the same numbers.
    f = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    assert max(abs(a - b) for a, b in zip(f.data[0].embedding, vecs[0])) < 1e-6
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], dimensions=100)


def test_chat_non_streaming_with_usage(client):
    r = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=8, **GREEDY)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.message.content
    assert c.finish_reason == "length"
    assert r.usage.completion_tokens == 8
    assert r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8


def test_chat_streaming_chunks_and_usage(client):
    whole = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=6, **GREEDY)
    stream = client.chat.completions.create(
        model="hearth", messages=MSG, max_tokens=6, stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    chunks = list(stream)
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens == 6
    assert chunks[-2].choices[0].finish_reason == "length"
    assert all(ch.usage is None for ch in chunks[:-1])
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks[:-1])
    assert text == whole.choices[0].message.content


def test_seed_reproducibility(client):
    def go(seed):
        r = client.chat.completions.create(
            model="hearth", messages=MSG, max_tokens=12, temperature=1.0, seed=seed, extra_body={"ignore_eos": True, "top_k": 0}
        )
        return r.choices[0].message.content

    a = go(99)
    assert a == go(99)
    assert a != go(100)


def test_stop_is_never_in_the_output(client):
    full = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=16, **GREEDY).choices[0].message.content
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = full.index(stop)
    r = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=16, stop=[stop], **GREEDY)
    assert r.choices[0].message.content == full[:cut]
    assert r.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=16, stop=stop, stream=True, **GREEDY)
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices) == full[:cut]


def test_n_choices(client):
    r = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=5, n=3, seed=1, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage.completion_tokens == 15
    assert len({c.message.content for c in r.choices}) > 1


def test_logprobs(client):
    r = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=4, logprobs=True, top_logprobs=3, **GREEDY)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for t in content:
        assert t.logprob <= 0
        assert len(t.top_logprobs) == 3
        # Greedy: the chosen token is the most likely.
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-5)
    assert "".join(t.token for t in content) == r.choices[0].message.content


def test_legacy_completions(client):
    r = client.completions.create(model="hearth", prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=2, extra_body={"ignore_eos": True})
    assert r.object == "text_completion"
    assert r.usage.completion_tokens == 5
    assert len(r.choices[0].logprobs.tokens) == 5


def test_bad_requests_are_400_with_param(client):
    cases = [
        (dict(temperature=3), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(max_tokens=10**6), "max_tokens"),
        (dict(logprobs=True, top_logprobs=50), "top_logprobs"),
        (dict(n=PARALLEL + 1), "n"),
        (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="hearth", messages=MSG, **kwargs)
        assert e.value.status_code == 400
        assert e.value.param == param, (kwargs, e.value.body)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="hearth",
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}]}],
        )
    assert e.value.param == "messages[0].content[0].type"


def test_context_overflow_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="hearth", messages=MSG, max_tokens=5000)
    assert e.value.code == "context_length_exceeded"


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 10}, "celsius": {"type": "boolean"}},
            "required": ["city", "celsius"],
        },
    },
}


def test_json_schema(client):
    schema = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "n": {"type": "integer", "minimum": 0, "maximum": 100},
            "tag": {"type": "string", "enum": ["red", "green", "blue"]},
        },
        "required": ["ok", "n", "tag"],
    }
    r = client.chat.completions.create(
        model="hearth",
        messages=MSG,
        max_tokens=400,
        seed=11,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
    )
    assert r.choices[0].finish_reason == "stop"
    doc = json.loads(r.choices[0].message.content)
    assert isinstance(doc["ok"], bool)
    assert 0 <= doc["n"] <= 100
    assert doc["tag"] in ("red", "green", "blue")
    obj = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=400, seed=12, response_format={"type": "json_object"})
    assert isinstance(json.loads(obj.choices[0].message.content), dict)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="hearth",
            messages=MSG,
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"not": {"type": "string"}}}},
        )
    assert e.value.param == "response_format.json_schema.schema"


def test_tools(client):
    r = client.chat.completions.create(
        model="hearth",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        max_tokens=400,
        seed=3,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    [call] = c.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args["celsius"], bool) and len(args["city"]) <= 10
    # The conversation continues with the tool's answer.
    follow = client.chat.completions.create(
        model="hearth",
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ],
        max_tokens=4,
        tools=[WEATHER],
        **GREEDY,
    )
    assert follow.choices[0].message.content
    # Streamed: the call arrives whole in one delta.
    stream = client.chat.completions.create(
        model="hearth",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        max_tokens=400,
        seed=3,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        stream=True,
    )
    chunks = list(stream)
    calls = [tc for ch in chunks if ch.choices and ch.choices[0].delta.tool_calls for tc in ch.choices[0].delta.tool_calls]
    assert calls and calls[0].index == 0 and calls[0].function.name == "get_weather"
    json.loads(calls[0].function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_auth(server):
    bad = openai.OpenAI(base_url=server + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert e.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="hearth", messages=MSG, max_tokens=1)
    # /health needs no key.
    with urllib.request.urlopen(server + "/health") as r:
        assert json.loads(r.read()) == {"status": "ok"}


def test_body_limit_is_413(client):
    huge = "x" * (3 << 20)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="hearth", messages=[{"role": "user", "content": huge}], max_tokens=1)
    assert e.value.status_code == 413


def test_32_concurrent_clients(client):
    def one(i):
        if i % 2:
            r = client.chat.completions.create(model="hearth", messages=[{"role": "user", "content": f"client {i}"}], max_tokens=6, seed=i, extra_body={"ignore_eos": True})
            return r.usage.completion_tokens
        s = client.chat.completions.create(
            model="hearth",
            messages=[{"role": "user", "content": f"client {i}"}],
            max_tokens=6,
            seed=i,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        return [ch for ch in s][-1].usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        assert list(pool.map(one, range(32))) == [6] * 32


def test_client_disconnecting_mid_stream_frees_its_slot(client, server):
    before = metrics(server).get("hearth_client_disconnects_total", 0)
    stream = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=3000, stream=True, **GREEDY)
    it = iter(stream)
    for _ in range(3):
        next(it)
    stream.close()
    wait_for(server, "hearth_client_disconnects_total", lambda v: v == before + 1)
    wait_for(server, "hearth_active_slots", lambda v: v == 0)
    r = client.chat.completions.create(model="hearth", messages=MSG, max_tokens=2, **GREEDY)
    assert r.choices[0].finish_reason == "length"


def test_loopback_only_without_key():
    binary = os.environ.get("HEARTH_BIN", "target/release/hearth")
    r = subprocess.run(
        [binary, "serve", "--model", os.environ["HEARTH_TEST_MODEL"], "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "--api-key" in r.stderr
