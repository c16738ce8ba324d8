#!/usr/bin/env bash
# Plays the CI recipe of docs/ci.md on this machine, step by step, with two
# checkpoints of the built-in zoo standing for a repository's models:
#   1. a new repository's first pull request: no baseline yet; the gate must pass;
#   2. after a merge, main's run is the baseline; an unchanged pull request must pass;
#   3. a pull request whose checkpoint got worse (another recipe's weights under the same
#      name) must fail.
# Exits 0 when all three behave, else prints which step did not.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
zoo=$(python -c "from harness.inputs.zoo import builtin_manifest; print(builtin_manifest().parent)")
cd "$work"
mkdir models
cp "$zoo/faces-xent-1.onnx" "$zoo/faces-xent-2.onnx" models/
cat > models/manifest.toml <<TOML
data = "$zoo/data.npz"
split = "test"
[[model]]
path = "faces-xent-1.onnx"
family = "faces-xent"
[[model]]
path = "faces-xent-2.onnx"
family = "faces-xent"
TOML
# docs/ci.md's gate.toml
cat > gate.toml <<'TOML'
rules = ["accuracy >= 0.8"]
no_regression = "when-baseline"
TOML

run() {  # the recipe's run step (CAM and 30 images keep this script fast)
    rm -rf results/run
    harness run --zoo models/manifest.toml --method cam --limit 30 --out results/run \
        --quiet > /dev/null 2> >(grep -v "^results:" >&2)
}
gate() {  # the recipe's gate step, word for word
    harness gate results/run --rules gate.toml $( [ -d baseline ] && echo --baseline baseline )
}
step() { echo "step $1: $2"; }

run
if ! out=$(gate); then step 1 "the first pull request failed:"; echo "$out"; exit 1; fi
grep -q "^SKIP" <<< "$out" || { step 1 "no SKIP line for the missing baseline"; exit 1; }
step 1 "first pull request, no baseline: passed, regression check skipped"

run && mv results/run baseline   # the job on main saves its run
run
if ! out=$(gate); then step 2 "an unchanged pull request failed:"; echo "$out"; exit 1; fi
grep -q "vs baseline" <<< "$out" || { step 2 "nothing was compared"; exit 1; }
step 2 "unchanged pull request against main's run: passed"

cp "$zoo/faces-guided-1.onnx" models/faces-xent-1.onnx   # a worse checkpoint, same name
run
if out=$(gate); then step 3 "a regression passed:"; echo "$out"; exit 1; fi
grep -q "^FAIL  faces-xent-1" <<< "$out" || { step 3 "failed, but not on the changed model"; exit 1; }
step 3 "regressed checkpoint: failed on $(grep -c '^FAIL' <<< "$out") check(s)"
