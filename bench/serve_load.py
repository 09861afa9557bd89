#!/usr/bin/env python3
"""Concurrency benchmark for a running `hearth serve` (not a test).

For each concurrency level C, C client threads each stream chat completions
of exactly --tokens tokens (ignore_eos) for --rounds rounds. Every request's
user message is new (client, round and a run counter are in it), so each
one evaluates its message and shares only the system prompt with earlier
requests: no run is helped by the cache of an earlier one. Reported:

- aggregate tok/s: completion tokens of all streams / wall time of the level
  (what the server delivers in total);
- decode tok/s per stream: (tokens - 1) / (last token - first token), median;
- TTFT p50/p95: request sent → first content chunk.

Only the standard library is used, so any python3 runs it:

    hearth serve -m model.gguf --parallel 8 &
    python3 bench/serve_load.py --url http://127.0.0.1:8080 --levels 1,4,8

Several reply lengths in one run (`--tokens 48,256`) give one table per
length: the prompt's share of the work falls as replies grow.

A/B on a shared, noisy machine: give several servers (say an old and a new
binary on two ports) as a comma-separated --url and --reps N. Every level is
run against each server in turn, N times, so that both see the same
background load; each server's table shows the median over the reps and the
best aggregate (the least disturbed run).

    python3 bench/serve_load.py --url http://127.0.0.1:18600,http://127.0.0.1:18601 --reps 5
"""

import argparse
import http.client
import itertools
import json
import statistics
import threading
import time
import urllib.parse


def one_stream(url, key, prompt, tokens, seed):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": tokens,
            "ignore_eos": True,
            "temperature": 0.7,
            "seed": seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = last = None
    completion = 0
    buf = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if not event.startswith(b"data: "):
                continue
            data = event[6:]
            if data == b"[DONE]":
                continue
            v = json.loads(data)
            if v.get("usage"):
                completion = v["usage"]["completion_tokens"]
            for c in v.get("choices", []):
                if c.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    last = now
    conn.close()
    return {"ttft": (first or time.perf_counter()) - t0, "first": first, "last": last, "tokens": completion}


def percentile(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# Numbers every level's prompts, so that no level meets its own prompts in
# a slot cache left by an earlier one.
RUNS = itertools.count(1)


def run_level(args, c):
    results = []
    lock = threading.Lock()
    run = next(RUNS)

    def client(i):
        for r in range(args.rounds):
            prompt = f"Client {i}, round {r}, run {run}: write a long story about a lighthouse keeper and the sea."
            res = one_stream(args.url, args.api_key, prompt, args.tokens, seed=1000 * i + r)
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(r["tokens"] for r in results)
    decode = [(r["tokens"] - 1) / (r["last"] - r["first"]) for r in results if r["first"] and r["last"] and r["last"] > r["first"]]
    ttft = [r["ttft"] for r in results]
    return {
        "concurrency": c,
        "requests": len(results),
        "tokens": total,
        "wall_s": wall,
        "aggregate_tok_s": total / wall,
        "per_stream_decode_tok_s": statistics.median(decode) if decode else 0.0,
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p95_s": percentile(ttft, 0.95),
    }


def print_table(rows, reps):
    """One line per level: medians over `reps` runs (and the best aggregate)."""
    levels = sorted({r["concurrency"] for r in rows})
    med = {}
    for c in levels:
        rs = [r for r in rows if r["concurrency"] == c]
        med[c] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "concurrency"}
        med[c]["best"] = max(r["aggregate_tok_s"] for r in rs)
    base = med[levels[0]]["aggregate_tok_s"]
    best = "  best agg" if reps > 1 else ""
    print(f"{'streams':>7} {'requests':>8} {'agg tok/s':>10} {'x vs 1':>7} {'per-stream tok/s':>17} {'TTFT p50':>9} {'TTFT p95':>9}{best}")
    for c in levels:
        m = med[c]
        extra = f" {m['best']:>9.1f}" if reps > 1 else ""
        print(
            f"{c:>7} {int(m['requests']):>8} {m['aggregate_tok_s']:>10.1f} {m['aggregate_tok_s'] / base:>7.2f} "
            f"{m['per_stream_decode_tok_s']:>17.1f} {m['ttft_p50_s']:>8.3f}s {m['ttft_p95_s']:>8.3f}s{extra}"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server URL, or several comma-separated (alternated)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--levels", default="1,4,8")
    ap.add_argument("--tokens", default="64", help="reply length, or several comma-separated (one table each)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1, help="run every level this many times per server (medians reported)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per level and run")
    args = ap.parse_args()
    urls = args.url.split(",")
    levels = [int(c) for c in args.levels.split(",")]
    # Warm-up: page the weights in.
    for u in urls:
        one_stream(u, args.api_key, "warm up", 4, 0)
    lengths = [int(t) for t in args.tokens.split(",")]
    rows = {(u, n): [] for u in urls for n in lengths}
    for n in lengths:
        for rep in range(args.reps):
            for c in levels:
                for u in urls:
                    r = run_level(argparse.Namespace(**{**vars(args), "url": u, "tokens": n}), c)
                    rows[(u, n)].append(r)
                    if args.json:
                        print(json.dumps({"url": u, "rep": rep, "reply_tokens": n, **r}), flush=True)
    if args.json:
        return
    for n in lengths:
        for u in urls:
            print(f"== {u}, {n}-token replies" if len(urls) > 1 else f"== {n}-token replies")
            print_table(rows[(u, n)], args.reps)


if __name__ == "__main__":
    main()
