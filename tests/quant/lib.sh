# lib.sh — what the quantization tests tests/cli/quant.sh and quant_ckpt.sh share: the Python
# with numpy, ml_dtypes and safetensors ($LLMRT_TEST_PYTHON, else .venv/bin/python, else
# python3; PY), a temporary folder (TMP), the ok/bad counters, and compare.
PY=${LLMRT_TEST_PYTHON:-}
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

if ! "$PY" -c "import numpy, ml_dtypes, safetensors" 2>/dev/null; then
  echo "FAIL the python at '$PY' lacks numpy, ml_dtypes or safetensors: run" \
       "scripts/install-deps.sh, or point LLMRT_TEST_PYTHON at a python that has them"
  echo "0 passed, 1 failed"; exit 1
fi

# compare GOT.json REF.json PLAIN.json: the logits of `llmrt logits --json` GOT within 1e-4 of
# each row's range of REF's (the dequantized reference), and more than 1e-3 of it away from
# PLAIN's (the unquantized model), so that the check can fail
compare() {
  "$PY" - "$@" <<'PY'
import json, sys
import numpy as np
q, ref, plain = (np.array(json.load(open(p))["logits"], dtype=np.float64) for p in sys.argv[1:])
span = ref.max(axis=1, keepdims=True) - ref.min(axis=1, keepdims=True)
err = (np.abs(q - ref) / span).max()
moved = (np.abs(q - plain) / span).max()
print("max |quantized - reference| / range %.2e, |quantized - unquantized| / range %.2e" % (err, moved))
sys.exit(0 if err <= 1e-4 and moved > 1e-3 else 1)
PY
}
