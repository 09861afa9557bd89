#!/usr/bin/env bash
# The table in docs/quantization.md: for each type, the file size, bits per
# weight, and `hearth compare` of the quantized model against the input
# (perplexity, mean KL divergence, top-1 agreement) on the WordNet text.
#
#   tools/quantize/measure.sh MODEL.gguf [CHUNKS] > table.md
#
# Needs target/release/hearth (cargo build --release -p hearth-cli).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HEARTH=${HEARTH:-$ROOT/target/release/hearth}
IN=$1
CHUNKS=${2:-32}
CTX=${CTX:-256}
THREADS=${THREADS:-2}
TEXT=${TEXT:-$ROOT/testdata/text/wordnet-glosses.txt}
TYPES=${TYPES:-"Q8_0 Q6_K Q5_K_M Q5_1 Q5_0 Q4_K_M Q4_1 Q4_0 Q3_K_M Q2_K"}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "<!-- tools/quantize/measure.sh $(basename "$IN") $CHUNKS (ctx $CTX) -->"
echo "| type | file size | bits/weight | perplexity | ln(PPL(Q)/PPL(base)) | mean KL (nats) | top-1 agreement |"
echo "|---|---|---|---|---|---|---|"
base_size=$(stat -c %s "$IN")
first=1
for t in $TYPES; do
  out="$TMP/$t.gguf"
  bpw=$("$HEARTH" quantize "$IN" "$out" --type "$t" --threads "$THREADS" 2>/dev/null | sed -n 's/.* \([0-9.]*\) bits per weight/\1/p')
  j=$("$HEARTH" compare "$IN" "$out" --text "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" --threads "$THREADS" --json 2>/dev/null)
  if [ $first = 1 ]; then
    printf '| base (%s) | %s | | %s | | | |\n' "$(basename "$IN")" "$base_size" \
      "$(echo "$j" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f ± %.3f" % (j["base_ppl"], j["base_ppl_stderr"]))')"
    first=0
  fi
  echo "$j" | python3 -c '
import json, sys
j = json.load(sys.stdin)
t, size, bpw = sys.argv[1:4]
print("| %s | %s | %s | %.3f ± %.3f | %.4f ± %.4f | %.5f ± %.5f | %.2f%% ± %.2f%% |" % (t, size, bpw,
      j["quant_ppl"], j["quant_ppl_stderr"], j["ln_ppl_ratio"], j["ln_ppl_ratio_stderr"],
      j["kl_mean"], j["kl_stderr"], 100 * j["top1_agreement"], 100 * j["top1_stderr"]))
' "$t" "$(stat -c %s "$out")" "$bpw"
  rm -f "$out"
done
