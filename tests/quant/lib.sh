# lib.sh — what the quantization tests tests/cli/quant.sh, quant_ckpt.sh and quant_int4_ckpt.sh
# share: the Python with numpy, ml_dtypes and safetensors ($LLMRT_TEST_PYTHON, else
# .venv/bin/python, else python3; PY), a temporary folder (TMP), the ok/bad counters, compare,
# and for the refusals edit, refused and run_e.
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

# edit DIR PYTHON: a copy of DIR in $TMP/e, changed by PYTHON, which sees cfg (config.json), qc
# (its quantization_config or None) and t (the tensors, writable numpy arrays: read here, since
# safetensors.numpy cannot load F8_E4M3), all written back
edit() {
  rm -rf "$TMP/e" && cp -r "$1" "$TMP/e" && "$PY" - "$TMP/e" "$2" <<'PY' || { bad "edit failed: $2"; rm -rf "$TMP/e"; }
import json, os, struct, sys
import ml_dtypes, numpy as np
from safetensors.numpy import save_file
d, code = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(d, "config.json")))
types = {"F8_E4M3": ml_dtypes.float8_e4m3fn, "BF16": ml_dtypes.bfloat16, "F16": np.float16,
         "F32": np.float32, "I32": np.int32, "I64": np.int64}
with open(os.path.join(d, "model.safetensors"), "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    data = f.read()
t = {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], types[v["dtype"]]).reshape(v["shape"]).copy()
     for k, v in header.items() if k != "__metadata__"}
qc = cfg.get("quantization_config")
exec(code)
json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
save_file(t, os.path.join(d, "model.safetensors"))
PY
}

# refused DESC NEEDLE... -- ARGS: `$BIN ARGS` fails, its stderr holds every NEEDLE, and it
# prints nothing on stdout (SHOW=1 echoes each message)
refused() {
  local desc=$1; shift
  local needles=(); while [ "$1" != -- ]; do needles+=("$1"); shift; done; shift
  "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  local miss=
  for n in "${needles[@]}"; do grep -qF -- "$n" "$TMP/err" || miss="$miss [$n]"; done
  [ -n "${SHOW:-}" ] && echo "$desc: $(cat "$TMP/err")"
  [ $rc != 0 ] && [ -z "$miss" ] && [ ! -s "$TMP/out" ] && ok ||
    bad "$desc: rc $rc, stdout $(wc -c <"$TMP/out") bytes, missing$miss in: $(cat "$TMP/err")"
}
# the arguments of a load of the edited copy
run_e() { echo logits --model "$TMP/e" --prompt-ids 5,9 --device cpu; }
