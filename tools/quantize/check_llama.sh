#!/usr/bin/env bash
# Offline checks against llama.cpp that CI cannot run (it has no llama.cpp):
#
#  1. Every file type Hearth writes loads and runs in llama.cpp: quantize a
#     model with `hearth quantize` and with llama-quantize, `cmp` the two
#     files, and run llama-perplexity on Hearth's file.
#  2. `hearth perplexity` against `llama-perplexity` on the same model, text
#     and context.
#
#   tools/quantize/check_llama.sh [FIXTURE_F16_GGUF] [TEXT] > crates/quantize/tests/data/llama_check.txt
#
# Needs target/release/hearth (cargo build --release -p hearth-cli) and
# llama.cpp's tools in $LLAMA_BIN (default /work/llama/build/bin).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LLAMA_BIN=${LLAMA_BIN:-/work/llama/build/bin}
HEARTH=${HEARTH:-$ROOT/target/release/hearth}
IN=${1:-/work/fixture-ggufs/llama-spm/llama-spm-F16.gguf}
TEXT=${2:-$ROOT/testdata/text/wordnet-glosses.txt}
CTX=${CTX:-128}
CHUNKS=${CHUNKS:-4}
THREADS=${THREADS:-2}
TYPES=${TYPES:-"Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K"}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

llama_ppl() { # model -> "PPL" (the final estimate)
  # llama.cpp logs from a worker thread and, on a busy machine, sometimes
  # exits before the last lines are written; try again when "Final
  # estimate" is missing.
  local p="" i
  for i in 1 2 3 4; do
    p=$("$LLAMA_BIN/llama-perplexity" -m "$1" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" -b "$CTX" 2>&1 \
      | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    [ -n "$p" ] && break
  done
  echo "$p"
}
hearth_ppl() {
  "$HEARTH" perplexity "$1" --text "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" --threads "$THREADS" | awk '{print $2}'
}

echo "# tools/quantize/check_llama.sh on $(basename "$IN"), text $(basename "$TEXT"), ctx $CTX, $CHUNKS chunks"
echo "# llama.cpp: $("$LLAMA_BIN/llama-perplexity" --version 2>&1 | head -1)"
printf '%-8s %-10s %-18s %-18s %s\n' type identical llama_ppl hearth_ppl llama_ppl_of_llama_file
for t in $TYPES; do
  "$HEARTH" quantize "$IN" "$TMP/h-$t.gguf" --type "$t" --threads "$THREADS" > /dev/null 2>&1
  "$LLAMA_BIN/llama-quantize" "$IN" "$TMP/l-$t.gguf" "$t" "$THREADS" > /dev/null 2>&1
  # Identical files have identical perplexities; only run llama.cpp on
  # its own file when they differ.
  same=no; other=""
  if cmp -s "$TMP/h-$t.gguf" "$TMP/l-$t.gguf"; then same=yes; else other=$(llama_ppl "$TMP/l-$t.gguf"); fi
  printf '%-8s %-10s %-18s %-18s %s\n' "$t" "$same" "$(llama_ppl "$TMP/h-$t.gguf")" "$(hearth_ppl "$TMP/h-$t.gguf")" "$other"
  rm -f "$TMP/h-$t.gguf" "$TMP/l-$t.gguf"
done
printf '%-8s %-10s %-18s %-18s\n' input - "$(llama_ppl "$IN")" "$(hearth_ppl "$IN")"
