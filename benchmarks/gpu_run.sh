#!/usr/bin/env bash
# The one script a GPU machine runs (issue 18.2); benchmarks/GPU_RUN.md says what each step takes.
#
#   bash benchmarks/gpu_run.sh OUT              # on a GPU machine, from a copy of the source tree (no install)
#   bash benchmarks/gpu_run.sh --dry-run OUT    # the same steps on the CPU with tiny sizes (CI runs it)
#
# Steps, in order; each writes its result into OUT as soon as it ends (OUT/steps/NAME.json, its log NAME.log and
# its own files), and OUT/summary.json is rewritten after every step, so a step that dies leaves the earlier ones:
#   source      which dali_cutmix python imports: it must be this tree's (never an installed stale copy)
#   doctor      dali-cutmix doctor --json (the native operators are built here; the ROI-decode smoke test)
#   tests       pytest -m "gpu and not sanitizer" over the in-process files (the stage in every mode, the
#               graphs, the loader, checkpoints, the trainer's GPU tests), JUnit XML in OUT/pytest-tests.xml
#   sanitizer   pytest -m sanitizer: the stage at crop 176 under compute-sanitizer (issue 18.5)
#   profile-cutmix, profile-mixup, profile-switch
#               dali-cutmix profile --device gpu, batch 256, prefetching, --model resnet50
#   demo, train a generated demo set (ImageNet layout), then a short dali-cutmix train --gpus 1 on it
#   tests-cli   the rest of the GPU half (trainer and CLI runs in subprocesses), with the time that is left of
#               GPU_RUN_BUDGET (default 590 s on a GPU), JUnit XML in OUT/pytest-tests-cli.xml
#   summary     OUT/summary.json and OUT/summary.txt (a table of a few lines, printed last)
# Every step has its own timeout (seconds; override with GPU_RUN_TIMEOUT_<STEP>, e.g. GPU_RUN_TIMEOUT_TESTS=300);
# GPU_RUN_SKIP="sanitizer profile-switch" leaves steps out. The interpreter is $PYTHON (default python3); the
# tree goes first on PYTHONPATH. If doctor's ROI decoding failed, the profile and training steps decode whole
# images (--decode full). The exit code is 0 when every step that ran passed, 1 otherwise, 2 for bad usage.
set -uo pipefail

usage() { echo "usage: bash benchmarks/gpu_run.sh [--dry-run] OUT" >&2; exit 2; }
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
[ $# -eq 1 ] || usage
case "$1" in -*) usage ;; esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
case $PY in  # a path to the interpreter, made absolute: the steps run from other folders
  */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" || exit 2 ;;
esac
cd "$root" || exit 2
mkdir -p "$1/steps" || { echo "gpu_run: cannot create $1" >&2; exit 2; }
out=$(cd "$1" && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export DALI_CUTMIX_CACHE=${DALI_CUTMIX_CACHE:-$out/cache}
export PYTHONUNBUFFERED=1
mode=$([ $dry = 1 ] && echo dry-run || echo gpu)
echo "gpu_run: $mode run of $root into $out ($(date -u +%FT%TZ))"

timeout_of() {  # timeout_of STEP DEFAULT: $GPU_RUN_TIMEOUT_<STEP> or DEFAULT
  local var="GPU_RUN_TIMEOUT_$(echo "$1" | tr 'a-z-' 'A-Z_')"
  echo "${!var:-$2}"
}

summarize() {  # OUT/summary.json (atomically) and OUT/summary.txt from what the steps left
  "$PY" - "$out" "$mode" <<'PY'
import glob, json, os, sys, xml.etree.ElementTree as ET

out, mode = sys.argv[1], sys.argv[2]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median(value):
    return value.get("median") if isinstance(value, dict) else value


steps = {}
for path in sorted(glob.glob(os.path.join(out, "steps", "*.json")), key=os.path.getmtime):
    step = load(path)
    if step:
        steps[step["name"]] = step
summary = {"schema": "dali-cutmix/gpu_run/1", "mode": mode, "steps": steps}
source = load(os.path.join(out, "source.json"))
summary["source"] = source
doctor = load(os.path.join(out, "doctor.json"))
if doctor:
    checks = {c["name"]: c for c in doctor.get("checks", [])}
    facts = doctor.get("facts", {})
    summary["doctor"] = {"verdict": doctor.get("verdict"), "gpus": [g.get("name") for g in facts.get("gpus", [])],
                         "roi_decode": checks.get("roi decode", {}).get("status"),
                         "roi_decode_detail": facts.get("roi_decode_detail"),
                         "failed": [n for n, c in checks.items() if c.get("status") == "fail"]}
for name in ("tests", "sanitizer", "tests-cli"):
    path = os.path.join(out, f"pytest-{name}.xml")
    if os.path.exists(path):
        try:
            suites = ET.parse(path).getroot()
        except ET.ParseError as e:
            summary[name] = {"error": f"unreadable JUnit XML: {e}"}
            continue
        suites = [suites] if suites.tag == "testsuite" else list(suites)
        counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
        failed = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
                  if c.find("failure") is not None or c.find("error") is not None]
        summary[name] = {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"]
                         - counts["skipped"], "failed": failed}
profiles = {}
for path in sorted(glob.glob(os.path.join(out, "profile-*.json"))):
    data = load(path)
    if not data:
        continue
    full = data.get("variants", {}).get("full", {})
    training = data.get("training") or {}
    profiles[os.path.basename(path)[len("profile-"):-len(".json")]] = {
        "gpu": (data.get("machine") or {}).get("gpu"),
        "images_per_s": median(full.get("images_per_s_async") or full.get("images_per_s")),
        "stage_share": median(data.get("cutmix_share")),
        "stage_ms_per_batch": median((data.get("cutmix_share") or {}).get("stage_ms_per_batch")),
        "model_images_per_s": training.get("images_per_s"),
        "data_wait_share": training.get("data_wait_share")}
summary["profile"] = profiles
metrics = os.path.join(out, "train", "metrics.jsonl")
if os.path.exists(metrics):
    records = [json.loads(line) for line in open(metrics) if line.strip()]
    if records:
        last = records[-1]
        summary["train"] = {k: last.get(k) for k in ("epoch", "train_loss", "val_top1", "images_per_s",
                                                     "data_wait", "train_images")}
run = load(os.path.join(out, "train", "run.json"))
if run is not None and "train" in summary:
    summary["train"]["run_json"] = {k: run[k] for k in ("gpu_memory", "decode", "device") if k in run}
summary["passed"] = bool(steps) and all(s["status"] == "passed" for s in steps.values())
tmp = os.path.join(out, ".summary.json.tmp")
with open(tmp, "w") as f:
    json.dump(summary, f, indent=2)
os.replace(tmp, os.path.join(out, "summary.json"))


def show(value, fmt):
    return "-" if value is None else fmt.format(value)


lines = [f"gpu_run ({mode}): {'passed' if summary['passed'] else 'NOT passed'}"]
for name, s in steps.items():
    lines.append(f"  {name:<15} {s['status']:<9} {s['seconds']:>6.1f} s  (limit {s['timeout']} s, exit {s['rc']})")
if doctor:
    d = summary["doctor"]
    lines.append(f"  doctor: {d['verdict']}; GPUs {', '.join(d['gpus']) or 'none'}; roi decode {d['roi_decode']}")
for name in ("tests", "sanitizer", "tests-cli"):
    t = summary.get(name)
    if t and "tests" in t:
        lines.append(f"  {name}: {t['passed']} passed, {t['failures'] + t['errors']} failed, {t['skipped']} skipped"
                     + (f" (first failure: {t['failed'][0]})" if t["failed"] else ""))
for name, p in profiles.items():
    lines.append(f"  profile {name:<7} {show(p['images_per_s'], '{:,.0f}')} images/s, stage "
                 f"{show(p['stage_share'], '{:.1%}')} ({show(p['stage_ms_per_batch'], '{:.2f}')} ms/batch), "
                 f"model {show(p['model_images_per_s'], '{:,.0f}')} images/s, data wait "
                 f"{show(p['data_wait_share'], '{:.1%}')}")
if "train" in summary:
    t = summary["train"]
    lines.append(f"  train: epoch {t['epoch']}, loss {show(t['train_loss'], '{:.3f}')}, "
                 f"{show(t['images_per_s'], '{:,.0f}')} images/s")
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write(text)
PY
}

failed=0
step_pid=
# Killed from outside (a command's limit): the running step goes too, not left behind in its own process group.
trap '[ -n "$step_pid" ] && kill -TERM "$step_pid" 2>/dev/null; echo "gpu_run: stopped" >&2; exit 143' TERM INT HUP
run_step() {  # run_step NAME TIMEOUT COMMAND...: OUT/NAME.log, OUT/steps/NAME.json, then the summary again
  local name=$1 limit=$2; shift 2
  case " ${GPU_RUN_SKIP:-} " in *" $name "*) echo "gpu_run: $name skipped (GPU_RUN_SKIP)"; return 0 ;; esac
  echo "gpu_run: $name (limit ${limit} s): $*"
  local start end rc status
  start=$(date +%s%N)
  # SIGINT first: pytest then still writes its JUnit XML for the tests that ran
  timeout --signal=INT --kill-after=20 "$limit" "$@" > "$out/$name.log" 2>&1 &
  step_pid=$!
  wait "$step_pid"
  rc=$?
  step_pid=
  end=$(date +%s%N)
  case $rc in 0) status=passed ;; 124|137) status=timed-out ;; *) status=failed ;; esac
  if [ "$name" = doctor ] && [ $rc = 1 ] && [ $dry = 1 ]; then status=passed; fi  # no GPU: exit 1 is its verdict
  [ $status = passed ] || failed=1
  "$PY" -c 'import json, sys
name, status, rc, ms, limit, path = sys.argv[1:7]
step = dict(name=name, status=status, rc=int(rc), seconds=round(int(ms) / 1000, 1), timeout=int(limit),
            command=sys.argv[7:], log=name + ".log")
open(path + ".tmp", "w").write(json.dumps(step) + "\n")' "$name" "$status" "$rc" $(((end - start) / 1000000)) "$limit" \
    "$out/steps/$name.json" "$@" && mv "$out/steps/$name.json.tmp" "$out/steps/$name.json"
  echo "gpu_run: $name $status (exit $rc); tail of $name.log:"
  tail -n 3 "$out/$name.log" | sed 's/^/    /'
  summarize || echo "gpu_run: the summary could not be written" >&2
}

cli() { "$PY" -m dali_cutmix.cli "$@"; }

# 0. The tree's own dali_cutmix, nothing installed: else every later figure is of another copy. Asked from /, as
# the tests' subprocesses (other working folders) ask it: through PYTHONPATH alone, not the current folder.
(cd / && "$PY" - "$root") > "$out/source.json" <<'PY'
import json, sys
import dali_cutmix
root = sys.argv[1]
where = dali_cutmix.__file__
print(json.dumps({"dali_cutmix": where, "root": root, "from_tree": where.startswith(root + "/dali_cutmix/"),
                  "python": sys.executable, "version": sys.version.split()[0]}))
PY
if ! grep -q '"from_tree": true' "$out/source.json"; then
  echo "gpu_run: python imports dali_cutmix from somewhere else than this tree: $(cat "$out/source.json")" >&2
  exit 1
fi
echo "gpu_run: imports $(cd / && "$PY" -c 'import dali_cutmix; print(dali_cutmix.__file__)') with $PY"

if [ $dry = 1 ]; then
  sizes=(--device cpu --batch-size 8 --images 16 --batches 1 --repeats 1 --crop 32 --threads 2 --steps 1
         --no-async-stages)
  train_sizes=(--gpus 0 --cpu-procs 1 --batch-size 8 --arch resnet18 --crop 32 --workers 1)
  demo=(4 8 4 64)  # classes, train per class, val per class, size
  defaults=(doctor 240 tests 300 sanitizer 180 profile 240 demo 60 train 240 tests-cli 300)  # a busy CI machine
  budget=${GPU_RUN_BUDGET:-100000}
else
  sizes=(--device gpu --batch-size 256 --images 1024 --batches 4 --repeats 3 --steps 5 --async-stages)
  train_sizes=(--gpus 1 --batch-size 128 --arch resnet50 --workers 4)
  demo=(8 128 16 256)
  # 600 s in all, one command's limit on the lent machine (benchmarks/GPU_RUN.md); most steps end sooner, and
  # tests-cli, last, takes what is left of the budget
  defaults=(doctor 75 tests 210 sanitizer 75 profile-cutmix 75 profile 50 demo 15 train 50 tests-cli 590)
  budget=${GPU_RUN_BUDGET:-590}
fi
limit() {  # limit GROUP STEP: STEP's default limit, else GROUP's; $GPU_RUN_TIMEOUT_<STEP> overrides it
  local i key
  for key in "$2" "$1"; do
    for ((i = 0; i < ${#defaults[@]}; i += 2)); do
      [ "${defaults[i]}" = "$key" ] && { timeout_of "$2" "${defaults[i+1]}"; return; }
    done
  done
}

# 1. doctor: the native operators are built now (into $DALI_CUTMIX_CACHE), then the ROI-decode smoke test.
run_step doctor "$(limit doctor doctor)" bash -c 'python_=$1; shift; exec "$python_" -m dali_cutmix.cli doctor --json \
  > "$0/doctor.json"' "$out" "$PY"
decode_flag=()
if grep -q '"roi_decode": "failed"' "$out/doctor.json" 2>/dev/null; then
  decode_flag=(--decode full)
  echo "gpu_run: doctor's ROI decoding failed: the profile and training decode whole images (--decode full)"
fi

# 2. The GPU half of the suite (skipped, with its reason, on a machine without a GPU): first the files that check
# in this process (the stage, the graphs, the loader, the trainer's own GPU tests); the rest (trainer and CLI runs
# in subprocesses) comes last, in tests-cli.
in_process=(tests/test_stage.py tests/test_mix.py tests/test_padding.py tests/test_pipeline.py tests/test_gpu_graph.py
            tests/test_gpu_training.py tests/test_hot_path.py tests/test_gpu_native_cache.py tests/test_dali_messages.py
            tests/test_doctor.py tests/test_profile.py)
run_step tests "$(limit tests tests)" "$PY" -m pytest -m "gpu and not sanitizer" -q -p no:cacheprovider \
  --junitxml "$out/pytest-tests.xml" "${in_process[@]}"
run_step sanitizer "$(limit sanitizer sanitizer)" "$PY" -m pytest -m sanitizer -q -p no:cacheprovider \
  --junitxml "$out/pytest-sanitizer.xml" tests/test_gpu_training.py

# 3. The profile: CutMix, MixUp, CutMix/MixUp switching; the stage against what users pick instead.
for variant in cutmix mixup switch; do
  case $variant in
    cutmix) mixing=() ;;
    mixup) mixing=(--cutmix-alpha 0 --mixup-alpha 0.8) ;;
    switch) mixing=(--mixup-alpha 0.8 --switch-prob 0.5) ;;
  esac
  run_step "profile-$variant" "$(limit profile "profile-$variant")" "$PY" -m dali_cutmix.cli profile "${sizes[@]}" \
    --model resnet50 "${mixing[@]}" "${decode_flag[@]}" --json "$out/profile-$variant.json" \
    --plot "$out/profile-$variant.png"
done

# 4. A short training run on a generated demo set.
run_step demo "$(limit demo demo)" "$PY" -c 'import sys; from dali_cutmix.pipelines.demo import write_dataset
write_dataset(sys.argv[1], num_classes=int(sys.argv[2]), train_per_class=int(sys.argv[3]),
              val_per_class=int(sys.argv[4]), size=int(sys.argv[5]))' "$out/demo" "${demo[@]}"
[ -d "$out/demo/train" ] && run_step train "$(limit train train)" "$PY" -m dali_cutmix.cli train --data "$out/demo" \
  --output "$out/train" --epochs 1 --seed 3 --warmup-epochs 0 "${train_sizes[@]}" "${decode_flag[@]}"

# 5. The rest of the GPU half, with what is left of the budget (none left: skipped, and the summary says so).
left=$((budget - SECONDS - 10))
cli_limit=$(limit tests-cli tests-cli)
[ "$left" -lt "$cli_limit" ] && cli_limit=$left
ignored=()
for file in "${in_process[@]}"; do ignored+=(--ignore "$file"); done
if [ "$cli_limit" -ge 30 ]; then
  run_step tests-cli "$cli_limit" "$PY" -m pytest -m "gpu and not sanitizer" -q -p no:cacheprovider \
    --junitxml "$out/pytest-tests-cli.xml" "${ignored[@]}" tests
else
  echo "gpu_run: tests-cli skipped: ${left} s left of the ${budget} s budget"
fi

# 6. The summary, last.
summarize
cat "$out/summary.txt"
exit $failed
