"""End-to-end: the hybrid gateway. A real `hearth serve --config hearth.toml`
in front of a second `hearth serve` acting as the OpenAI-compatible "cloud",
driven by the official `openai` SDK with a mixed query set; then the routes,
the answers, the ledger rows and the `hearth report` figures are checked.

Both servers run the random-weight test model (HEARTH_TEST_MODEL): at
temperature 0 their answers are deterministic, so a cloud-routed answer can
be compared with the same request sent to the "cloud" directly.
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import openai
import pytest

BIN = os.environ.get("HEARTH_BIN", "target/release/hearth")


def _serve(args, env=None):
    proc = subprocess.Popen(
        [BIN, "serve", "--port", "0", "--threads", "2", "--no-embeddings"] + args,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = None
    lines = []
    for _ in range(10):
        line = proc.stderr.readline()
        lines.append(line)
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            base = m.group(1)
            break
    assert base, f"hearth serve did not start: {lines!r}"
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


@pytest.fixture(scope="module")
def pair():
    model = os.environ["HEARTH_TEST_MODEL"]
    cloud, cloud_base = _serve(["--model", model, "--alias", "upstream-model"])
    tmp = tempfile.mkdtemp(prefix="hearth-e2e-gw-")
    cfg = os.path.join(tmp, "hearth.toml")
    with open(cfg, "w") as f:
        f.write(
            f"""
[local]
model = "{model}"
name = "tiny"
parallel = 2

[cloud]
base_url = "{cloud_base}/v1"
model = "upstream-model"
api_key_env = "E2E_CLOUD_KEY"
deadline = "60s"

[cloud.prices]
input_per_mtok = 2.5
output_per_mtok = 10.0

[router]
kind = "heuristic"

[guard]
audit_log = "audit.jsonl"
audit_key = "audit.key"

[guard.entities]
EMAIL = "redact"
US_SSN = "block"

[ledger]
url = "ledger.db"
"""
        )
    subprocess.run([BIN, "audit", "keygen", "--out", os.path.join(tmp, "audit.key")], check=True, capture_output=True)
    check = subprocess.run([BIN, "config", "check", cfg], capture_output=True, text=True,
                           env={**os.environ, "E2E_CLOUD_KEY": "sk-e2e-upstream"})
    assert check.returncode == 0, check.stderr
    env = {**os.environ, "E2E_CLOUD_KEY": "sk-e2e-upstream"}
    front, front_base = _serve(["--config", cfg], env=env)
    yield {"front": front_base, "cloud": cloud_base, "tmp": tmp, "proc": front}
    if front.poll() is None:
        front.terminate()
        front.wait(timeout=30)
    cloud.terminate()
    cloud.wait(timeout=30)


def _client(base):
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)


ROUTINE = [
    "Summarize this paragraph in one sentence.",
    "Translate 'good morning' into French.",
    "Extract the date from: the meeting is on May 3.",
    "Rewrite this sentence more politely: send it now.",
]
HARD = [
    "Design a fault-tolerant architecture for a global payments system and analyze the trade-offs step by step.",
    "Prove that the algorithm terminates and derive its worst-case complexity in depth.",
]
PARAMS = dict(temperature=0, max_tokens=6, seed=7)


def test_mixed_traffic_routes_answers_ledger_and_report(pair):
    front, cloud = _client(pair["front"]), _client(pair["cloud"])
    seen = []
    for q in ROUTINE + HARD:
        raw = front.chat.completions.with_raw_response.create(
            model="hearth/auto", messages=[{"role": "user", "content": q}], **PARAMS
        )
        r = raw.parse()
        route = raw.headers.get("x-hearth-route")
        reasons = raw.headers.get("x-hearth-reason")
        seen.append(route)
        assert r.choices[0].message.content is not None
        if q in HARD:
            assert route == "cloud", reasons
            assert "router.cloud" in reasons
            assert r.model == "cloud/upstream-model"
            direct = cloud.chat.completions.create(
                model="upstream-model", messages=[{"role": "user", "content": q}], **PARAMS
            )
            assert r.choices[0].message.content == direct.choices[0].message.content
            assert r.usage.completion_tokens == direct.usage.completion_tokens
        else:
            assert route == "local", reasons
            assert "router.local" in reasons

    # Streaming through the cloud: the same text as without streaming.
    q = HARD[0]
    whole = front.chat.completions.create(model="hearth/auto", messages=[{"role": "user", "content": q}], **PARAMS)
    parts = []
    for chunk in front.chat.completions.create(
        model="hearth/auto", messages=[{"role": "user", "content": q}], stream=True, **PARAMS
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert "".join(parts) == whole.choices[0].message.content

    # Forced routes.
    raw = front.chat.completions.with_raw_response.create(
        model="cloud/upstream-model", messages=[{"role": "user", "content": ROUTINE[0]}], **PARAMS
    )
    assert raw.headers.get("x-hearth-route") == "cloud"
    raw = front.chat.completions.with_raw_response.create(
        model="local/tiny", messages=[{"role": "user", "content": HARD[0]}], **PARAMS
    )
    assert raw.headers.get("x-hearth-route") == "local"

    # Privacy: a keep-local type overrides the router; a blocked type is a 400.
    raw = front.chat.completions.with_raw_response.create(
        model="hearth/auto",
        messages=[{"role": "user", "content": HARD[0] + " Call me at (643) 555-9640."}],
        **PARAMS,
    )
    assert raw.headers.get("x-hearth-route") == "local"
    assert "pii.keep_local:PHONE" in raw.headers.get("x-hearth-reason")
    with pytest.raises(openai.BadRequestError) as e:
        front.chat.completions.create(
            model="hearth/auto", messages=[{"role": "user", "content": "My SSN is 480-26-7889."}], **PARAMS
        )
    assert e.value.code == "blocked_by_privacy_policy"
    assert "480-26-7889" not in str(e.value)

    # 6 mixed + 2 (whole, stream) + 2 forced + 2 privacy = 12 requests:
    # cloud = 2 hard + 2 + 1 forced = 5; local = 4 routine + 1 forced + 1 keep-local + 1 blocked = 7.
    proc = pair["proc"]
    proc.send_signal(signal.SIGINT)  # flushes the ledger, signs an audit checkpoint
    proc.wait(timeout=30)
    db = os.path.join(pair["tmp"], "ledger.db")
    rep = json.loads(subprocess.run([BIN, "report", "--ledger", db, "--json"], check=True, capture_output=True, text=True).stdout)
    print("hearth report:", json.dumps(rep))
    assert rep["requests"] == 12, rep
    assert rep["cloud"]["requests"] == 5, rep
    assert rep["local"]["requests"] == 7, rep
    assert abs(rep["local_share"] - 7 / 12) < 1e-9, rep
    assert rep["cost_usd"] > 0
    assert rep["all_cloud_cost_usd"] > rep["cost_usd"]
    assert rep["savings_usd"] > 0
    table = subprocess.run([BIN, "report", "--ledger", db], check=True, capture_output=True, text=True).stdout
    assert "local share" in table and "savings" in table
    # The audit log verifies with the key, one entry per decision.
    v = subprocess.run(
        [BIN, "audit", "verify", os.path.join(pair["tmp"], "audit.jsonl"), "--key", os.path.join(pair["tmp"], "audit.key"), "--json"],
        capture_output=True, text=True,
    )
    assert v.returncode == 0, v.stdout + v.stderr
    assert json.loads(v.stdout)["entries"] == 12
