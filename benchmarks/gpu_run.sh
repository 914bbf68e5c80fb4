#!/usr/bin/env bash
# The one script a GPU machine runs; benchmarks/GPU_RUN.md says what each step takes and how it gets there.
#
#   bash benchmarks/gpu_run.sh [--sanitizer] OUT      # on a GPU machine, from a copy of the source tree (no install)
#   bash benchmarks/gpu_run.sh --dry-run OUT          # the same plan on the CPU with CPU sizes (CI runs it)
#   bash benchmarks/gpu_run.sh --check-args           # only check both plans' demo, train and profile arguments
#
# One budget, GPU_RUN_BUDGET seconds (default 480 on a GPU, 420 in the dry run), holds every step, in order of
# value; each step's limit is its own default (GPU_RUN_TIMEOUT_<STEP> overrides it) cut to what is left, a step
# that would get less than its minimum is skipped (the summary says so), and the script stops itself with time
# left to pack. Steps:
#   args        benchmarks/gpu_run_args.py: GPU mode's and the dry run's demo, train and profile arguments,
#               through the commands' own checkers (the CPU suffices, so CI fails on a bad GPU-mode size)
#   env         nvidia-smi, which g++ / nvcc, df -h /dev/shm, cores, Python, torch, torchvision, timm, DALI
#   roi-smoke   DALI's ROI decoding (decoders.image_random_crop, "mixed" on the GPU, CPU in the dry run) in a
#               subprocess with a short timeout (nvImageCodec issue #55). Failed, hung or no verdict: every later
#               step decodes whole images (DALI_CUTMIX_DECODE=full in their environment, --decode full on the
#               trainer and the profiler). GPU_RUN_ROI_SMOKE="COMMAND" replaces the test (its exit code is the
#               verdict), for rehearsals.
#   doctor      dali-cutmix doctor --json (builds the native operators)
#   tests       pytest -m "gpu and not sanitizer" over the in-process files
#   sanitizer   only with --sanitizer or GPU_RUN_SANITIZER=1: the stage at crop 176 under compute-sanitizer
#   demo, train the demo set, then a short dali-cutmix train on it
#   profile-cutmix, profile-mixup, profile-switch
#               dali-cutmix profile with --model resnet50
#   tests-cli   the rest of the GPU half (trainer and CLI in subprocesses), with what is left
# The steps write into a work folder (GPU_RUN_WORK, default a new /tmp/gpu_run.XXXXXX); after every step and as the
# script's last act (also on a failed step, a timeout or a signal) OUT gets summary.txt, summary.json and ONE
# archive, gpu_run.tar.gz, of the results (summary, step records, logs, JSON, JUnit XML, profile charts; no
# images, caches or checkpoints): at most 8 files, none over 16 MiB, none deeper than two folders, as the GPU
# machine returns them. GPU_RUN_SKIP="profile-switch tests-cli" leaves steps out. The interpreter is $PYTHON
# (default python3); the tree goes first on PYTHONPATH. Exit code: 0 when every step that ran passed (or was cut by
# the budget) and OUT is within the return limits, 1 otherwise, 2 for bad usage, 143 after a signal.
set -uo pipefail

usage() {
  echo "usage: bash benchmarks/gpu_run.sh [--dry-run] [--sanitizer] OUT | bash benchmarks/gpu_run.sh --check-args" >&2
  exit 2
}
dry=0 check_only=0 sanitizer=${GPU_RUN_SANITIZER:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --sanitizer) sanitizer=1 ;;
    --check-args) check_only=1 ;;
    -*) usage ;;
    *) break ;;
  esac
  shift
done
if [ $check_only = 1 ]; then [ $# -eq 0 ] && [ $dry = 0 ] || usage; else [ $# -eq 1 ] || usage; fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
case $PY in  # a path to the interpreter, made absolute: the steps run from other folders
  */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" || exit 2 ;;
esac
cd "$root" || exit 2
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# The plans: every size and flag a mode passes. `plan MODE` sets them; the args step checks both modes' sets.
plan() {
  if [ "$1" = dry-run ]; then
    profile_sizes=(--device cpu --batch-size 8 --images 16 --batches 1 --repeats 1 --crop 32 --threads 2 --steps 1
                   --no-async-stages --model resnet18)
    train_sizes=(--gpus 0 --cpu-procs 1 --batch-size 8 --arch resnet18 --crop 32 --workers 1)
    demo=(4 8 4 64)  # classes, train per class, val per class, size
    smoke_device=cpu
    # name, default limit, minimum (seconds): limits are 2-4 times a busy 2-core CI machine's times, minimums
    # about those times (a step the budget cannot give them is skipped rather than cut short)
    steps=(args 120 30 env 60 20 roi-smoke 60 10 doctor 180 45 tests 240 30 sanitizer 120 40 demo 60 5 train 180 45
           profile-cutmix 180 60 profile-mixup 150 60 profile-switch 150 60 tests-cli 300 40)
    default_budget=420
  else
    profile_sizes=(--device gpu --batch-size 256 --images 1024 --batches 4 --repeats 3 --steps 5 --async-stages
                   --model resnet50)
    train_sizes=(--gpus 1 --batch-size 128 --arch resnet50 --workers 4)
    demo=(6 128 16 256)  # classes (pipelines/demo.py has 6), train per class, val per class, size
    smoke_device=gpu
    steps=(args 30 10 env 20 5 roi-smoke 60 20 doctor 90 30 tests 180 60 sanitizer 75 40 demo 30 5 train 60 30
           profile-cutmix 75 40 profile-mixup 50 30 profile-switch 50 30 tests-cli 300 30)
    default_budget=480
  fi
}
profile_mixing() {  # profile_mixing VARIANT: its mixing flags
  case $1 in
    cutmix) mixing=() ;;
    mixup) mixing=(--cutmix-alpha 0 --mixup-alpha 0.8) ;;
    switch) mixing=(--mixup-alpha 0.8 --switch-prob 0.5) ;;
  esac
}
train_command() {  # train_command DEMO OUTPUT DECODE: the train step's command
  command=("$PY" -m dali_cutmix.cli train --data "$1" --output "$2" --epochs 1 --seed 3 --warmup-epochs 0
           "${train_sizes[@]}" --decode "$3")
}
profile_command() {  # profile_command VARIANT FOLDER DECODE: a profile step's command
  profile_mixing "$1"
  command=("$PY" -m dali_cutmix.cli profile "${profile_sizes[@]}" "${mixing[@]}" --decode "$3"
           --json "$2/profile-$1.json" --plot "$2/profile-$1.png")
}
args_command() {  # the args step's command: both plans, as the steps would pass them (into a folder never written)
  local mode variant folder=/nonexistent/gpu_run check=("$PY" benchmarks/gpu_run_args.py)
  for mode in gpu dry-run; do
    plan $mode
    train_command "$folder/demo" "$folder/train" roi
    check+=(-- plan $mode -- demo "${demo[@]}" -- train "${command[@]:4}")
    for variant in cutmix mixup switch; do
      profile_command $variant "$folder" roi
      check+=(-- profile "${command[@]:4}")
    done
  done
  command=("${check[@]}")
}
if [ $check_only = 1 ]; then
  args_command
  exec "${command[@]}"
fi

mode=$([ $dry = 1 ] && echo dry-run || echo gpu)
plan $mode
budget=${GPU_RUN_BUDGET:-$default_budget}
case $budget in ''|*[!0-9]*) echo "gpu_run: GPU_RUN_BUDGET must be a number of seconds, got '$budget'" >&2; exit 2 ;; esac
mkdir -p "$1" || { echo "gpu_run: cannot create $1" >&2; exit 2; }
out=$(cd "$1" && pwd)
work=${GPU_RUN_WORK:-$(mktemp -d /tmp/gpu_run.XXXXXX)}
mkdir -p "$work/steps" || { echo "gpu_run: cannot create $work" >&2; exit 2; }
work=$(cd "$work" && pwd)
case "$out/" in "$work/"*) echo "gpu_run: OUT ($out) must not be inside the work folder ($work)" >&2; exit 2 ;; esac
case "$work/" in "$out/"*) echo "gpu_run: the work folder ($work) must not be inside OUT ($out)" >&2; exit 2 ;; esac
export DALI_CUTMIX_CACHE=${DALI_CUTMIX_CACHE:-$work/cache}
kill_after=10  # a step past its limit: SIGINT (pytest still writes its JUnit XML), SIGKILL this much later
reserve=$((kill_after + 15))  # what the end needs: a step's SIGKILL, the summary, the archive
echo "gpu_run: $mode run of $root, budget $budget s, work folder $work, results into $out ($(date -u +%FT%TZ))"

decode=roi  # the ROI smoke test says "ok": DALI_CUTMIX_DECODE stays as it is given; else every step gets "full"
failed=0
step_pid=

summarize() {  # WORK/summary.json and WORK/summary.txt from what the steps left, copied into OUT
  "$PY" - "$work" "$mode" "$budget" "$SECONDS" <<'PY'
import glob, json, os, sys, xml.etree.ElementTree as ET

work, mode, budget, elapsed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median(value):
    return value.get("median") if isinstance(value, dict) else value


steps = {}
for path in sorted(glob.glob(os.path.join(work, "steps", "*.json")), key=lambda p: (os.path.getmtime(p), p)):
    step = load(path)
    if step:
        steps[step["name"]] = step
ran = {n: s for n, s in steps.items() if s["status"] != "skipped"}
summary = {"schema": "dali-cutmix/gpu_run/2", "mode": mode, "budget_s": budget, "elapsed_s": elapsed,
           "steps": steps, "skipped": [n for n, s in steps.items() if s["status"] == "skipped"],
           "cut": [n for n, s in steps.items() if s["status"] == "cut"]}
summary["source"] = load(os.path.join(work, "source.json"))
summary["env"] = load(os.path.join(work, "env.json"))
summary["roi_smoke"] = load(os.path.join(work, "roi.json"))
doctor = load(os.path.join(work, "doctor.json"))
if doctor:
    checks = {c["name"]: c for c in doctor.get("checks", [])}
    facts = doctor.get("facts", {})
    summary["doctor"] = {"verdict": doctor.get("verdict"), "gpus": [g.get("name") for g in facts.get("gpus", [])],
                         "roi_decode": checks.get("roi decode", {}).get("status"),
                         "roi_decode_detail": facts.get("roi_decode_detail"),
                         "failed": [n for n, c in checks.items() if c.get("status") == "fail"]}
for name in ("tests", "sanitizer", "tests-cli"):
    path = os.path.join(work, f"pytest-{name}.xml")
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
for path in sorted(glob.glob(os.path.join(work, "profile-*.json"))):
    data = load(path)
    if not data:
        continue
    full = data.get("variants", {}).get("full", {})
    training = data.get("training") or {}
    profiles[os.path.basename(path)[len("profile-"):-len(".json")]] = {
        "gpu": (data.get("machine") or {}).get("gpu"),
        "decode": (data.get("settings") or {}).get("decode"),
        "images_per_s": median(full.get("images_per_s_async") or full.get("images_per_s")),
        "stage_share": median(data.get("cutmix_share")),
        "stage_ms_per_batch": median((data.get("cutmix_share") or {}).get("stage_ms_per_batch")),
        "model_images_per_s": training.get("images_per_s"),
        "data_wait_share": training.get("data_wait_share")}
summary["profile"] = profiles
metrics = os.path.join(work, "train", "metrics.jsonl")
if os.path.exists(metrics):
    records = [json.loads(line) for line in open(metrics) if line.strip()]
    if records:
        last = records[-1]
        summary["train"] = {k: last.get(k) for k in ("epoch", "train_loss", "val_top1", "images_per_s",
                                                     "data_wait", "train_images")}
run = load(os.path.join(work, "train", "run.json"))
if run is not None and "train" in summary:
    summary["train"]["run_json"] = {**{k: run[k] for k in ("gpu_memory", "device") if k in run},
                                    "decode": (run.get("config") or {}).get("decode")}
summary["passed"] = bool(ran) and all(s["status"] in ("passed", "cut") for s in ran.values())
with open(os.path.join(work, ".summary.json.tmp"), "w") as f:
    json.dump(summary, f, indent=2)
os.replace(os.path.join(work, ".summary.json.tmp"), os.path.join(work, "summary.json"))


def show(value, fmt):
    return "-" if value is None else fmt.format(value)


lines = [f"gpu_run ({mode}): {'passed' if summary['passed'] else 'NOT passed'} ({elapsed} s of {budget} s)"]
for name, s in steps.items():
    if s["status"] == "skipped":
        lines.append(f"  {name:<15} skipped   {s['reason']}")
    elif s["status"] == "cut":
        lines.append(f"  {name:<15} cut       {s['seconds']:>6.1f} s  (stopped at the {s['timeout']} s the budget "
                     f"left it, decode {s['decode']})")
    else:
        lines.append(f"  {name:<15} {s['status']:<9} {s['seconds']:>6.1f} s  (limit {s['timeout']} s, exit "
                     f"{s['rc']}, decode {s['decode']})")
env = summary["env"]
if env:
    lines.append(f"  env: {env.get('gpu') or 'no GPU'}; Python {env.get('python')}, torch {env.get('torch')}, "
                 f"DALI {env.get('dali')}, {env.get('cores')} cores")
roi = summary["roi_smoke"]
if roi:
    lines.append(f"  roi smoke ({roi.get('device')}): {roi.get('status')}: {roi.get('detail')}")
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
with open(os.path.join(work, "summary.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

pack() {  # OUT/summary.txt, OUT/summary.json and OUT/gpu_run.tar.gz (the results, no images/caches/checkpoints)
  "$PY" - "$work" "$out" <<'PY'
import io, os, sys, tarfile

work, out = sys.argv[1], sys.argv[2]
KEEP = (".json", ".jsonl", ".txt", ".log", ".xml", ".png", ".csv")  # no .jpg, .pt, .so: images, checkpoints, caches
SKIP_DIRS = {"cache", "demo", "data", "__pycache__"}
PER_FILE = 2 << 20   # a longer file (a log) keeps its last 2 MiB
TOTAL = 14 << 20     # the archive stays under the 16 MiB a returned file may have


def members():
    for folder, dirs, files in os.walk(work):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.endswith(KEEP) and not name.startswith(".") and os.path.isfile(path):
                yield os.path.relpath(path, work), path


def pack(limit):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for rel, path in members():
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > limit:
                    f.seek(size - limit)
                data = f.read(limit)
            info = tarfile.TarInfo("gpu_run/" + rel)
            info.size, info.mtime, info.mode = len(data), int(os.path.getmtime(path)), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


limit = PER_FILE
data = pack(limit)
while len(data) > TOTAL and limit > 4096:
    limit //= 4
    data = pack(limit)
for name, content in (("gpu_run.tar.gz", data), ("summary.json", None), ("summary.txt", None)):
    if content is None:
        try:
            content = open(os.path.join(work, name), "rb").read()
        except OSError:
            continue
    tmp = os.path.join(out, f".{name}.tmp")
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, os.path.join(out, name))
PY
}

check_out() {  # OUT within what the GPU machine returns: at most 8 files, none over 16 MiB, none deeper than 2 folders
  "$PY" - "$out" <<'PY'
import os, sys

out = sys.argv[1]
files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
bad = [f"{len(files)} files (at most 8)"] if len(files) > 8 else []
bad += [f"{os.path.relpath(f, out)} is {os.path.getsize(f) >> 20} MiB (at most 16)" for f in files
        if os.path.getsize(f) > 16 << 20]
bad += [f"{os.path.relpath(f, out)} is deeper than two folders" for f in files
        if os.path.relpath(f, out).count(os.sep) > 2]
if bad:
    sys.exit("gpu_run: OUT is not within the return limits: " + "; ".join(bad))
PY
}

finish() {  # the last act, whatever ended the run: the running step stopped, the summary, the archive, the check
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$step_pid" ]; then kill -TERM "$step_pid" 2>/dev/null; wait "$step_pid" 2>/dev/null; fi
  summarize || echo "gpu_run: the summary could not be written" >&2
  pack || echo "gpu_run: the results could not be packed" >&2
  check_out || rc=1
  [ -f "$work/summary.txt" ] && cat "$work/summary.txt"
  echo "gpu_run: results in $out ($(ls "$out" | tr '\n' ' ')); the work folder is $work"
  [ $rc = 0 ] && { [ $failed = 1 ] || ! grep -q '^  "passed": true' "$work/summary.json" 2>/dev/null; } && rc=1
  exit $rc
}
trap finish EXIT
trap 'echo "gpu_run: stopped by a signal" >&2; exit 143' TERM INT HUP

record() {  # record NAME STATUS RC MS LIMIT REASON COMMAND...: WORK/steps/NAME.json
  "$PY" -c 'import json, os, sys
name, status, rc, ms, limit, reason, decode, path = sys.argv[1:9]
step = dict(name=name, status=status, rc=int(rc), seconds=round(int(ms) / 1000, 1), timeout=int(limit),
            decode=decode, command=sys.argv[9:], log=name + ".log")
if reason:
    step["reason"] = reason
open(path + ".tmp", "w").write(json.dumps(step) + "\n")
os.replace(path + ".tmp", path)' "$1" "$2" "$3" "$4" "$5" "$6" "${DALI_CUTMIX_DECODE:-roi}" "$work/steps/$1.json" "${@:7}"
}

limit_of() {  # limit_of STEP: "LIMIT MINIMUM CUT": its default limit (or $GPU_RUN_TIMEOUT_<STEP>) cut to what is
  local i var left lim minimum cut=0  # left (CUT 1 when the budget cut it)
  for ((i = 0; i < ${#steps[@]}; i += 3)); do
    if [ "${steps[i]}" = "$1" ]; then
      var="GPU_RUN_TIMEOUT_$(echo "$1" | tr 'a-z-' 'A-Z_')"
      lim=${!var:-${steps[i+1]}} minimum=1
      left=$((budget - SECONDS - reserve))
      # the step's minimum bounds what the budget leaves it, not a limit asked for
      [ "$left" -lt "$lim" ] && lim=$left minimum=${steps[i+2]} cut=1
      echo "$lim $minimum $cut"
      return
    fi
  done
  echo "gpu_run: no step $1" >&2; exit 2
}

run_step() {  # run_step NAME COMMAND...: WORK/NAME.log, WORK/steps/NAME.json, then the summary and archive in OUT
  local name=$1; shift
  case " ${GPU_RUN_SKIP:-} " in *" $name "*) echo "gpu_run: $name skipped (GPU_RUN_SKIP)"; return 0 ;; esac
  local limit minimum cut start end rc status
  read -r limit minimum cut < <(limit_of "$name")
  if [ "$limit" -lt "$minimum" ]; then
    echo "gpu_run: $name skipped: $limit s left of the budget, it needs $minimum"
    record "$name" skipped 0 0 "$limit" "budget: ${limit} s left, needs ${minimum} s" "$@"
    summarize && pack
    return 0
  fi
  echo "gpu_run: $name (limit ${limit} s, decode ${DALI_CUTMIX_DECODE:-roi}): $*"
  start=$(date +%s%N)
  timeout --signal=INT --kill-after=$kill_after "$limit" "$@" > "$work/$name.log" 2>&1 &
  step_pid=$!
  wait "$step_pid"
  rc=$?
  step_pid=
  end=$(date +%s%N)
  case $rc in 0) status=passed ;; 124|137) status=timed-out ;; *) status=failed ;; esac
  if [ "$name" = doctor ] && [ $rc = 1 ] && [ $dry = 1 ]; then status=passed; fi  # no GPU: exit 1 is its verdict
  # stopped at the limit the budget left it, not at its own: "cut" (the summary lists it; not a failure)
  [ $status = timed-out ] && [ "$cut" = 1 ] && status=cut
  case $status in passed|cut) ;; *) failed=1 ;; esac
  record "$name" $status $rc $(((end - start) / 1000000)) "$limit" "" "$@"
  echo "gpu_run: $name $status (exit $rc); tail of $name.log:"
  tail -n 3 "$work/$name.log" | sed 's/^/    /'
  last_status=$status
  summarize && pack || echo "gpu_run: the summary could not be written" >&2
}

# 0. The tree's own dali_cutmix, nothing installed: else every later figure is of another copy. Asked from /, as
# the tests' subprocesses (other working folders) ask it: through PYTHONPATH alone, not the current folder.
(cd / && "$PY" - "$root") > "$work/source.json" <<'PY'
import json, sys
import dali_cutmix
root = sys.argv[1]
where = dali_cutmix.__file__
print(json.dumps({"dali_cutmix": where, "root": root, "from_tree": where.startswith(root + "/dali_cutmix/"),
                  "python": sys.executable, "version": sys.version.split()[0]}))
PY
if ! grep -q '"from_tree": true' "$work/source.json"; then
  echo "gpu_run: python imports dali_cutmix from somewhere else than this tree: $(cat "$work/source.json")" >&2
  failed=1
  exit 1
fi
echo "gpu_run: imports $(cd / && "$PY" -c 'import dali_cutmix; print(dali_cutmix.__file__)') with $PY"

# 1. Both plans' arguments, through the commands' own checkers.
args_command
run_step args "${command[@]}"
plan $mode  # args_command walked both plans

# 2. What the machine is.
run_step env bash -c 'py=$1 work=$2
section() { echo; echo "## $*"; "$@" 2>&1 || echo "(exit $?)"; }
section nvidia-smi
section which g++ nvcc cmake
section g++ --version
section df -h /dev/shm /tmp
section nproc
section free -g
"$py" - "$work/env.json" <<"EOF"
import importlib, json, os, platform, subprocess, sys
facts = {"python": platform.python_version(), "cores": os.cpu_count()}
for name, module in (("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"), ("dali", "nvidia.dali")):
    try:
        facts[name] = importlib.import_module(module).__version__
    except Exception as e:  # a missing or broken package is a fact here, not a failure
        facts[name] = f"not importable: {type(e).__name__}: {e}"
try:
    import torch
    facts["torch_cuda"] = torch.version.cuda
    facts["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as e:
    facts["gpu"] = None
print(json.dumps(facts, indent=2))
json.dump(facts, open(sys.argv[1], "w"), indent=2)
EOF' env "$PY" "$work"

# 3. DALI's ROI decoding, alone in a subprocess: anything but a clean "ok" and the rest decodes whole images.
read -r smoke_limit _ < <(limit_of roi-smoke)
smoke_timeout=$((smoke_limit > 20 ? smoke_limit - 15 : smoke_limit * 3 / 4))  # the subprocess ends first
if [ -n "${GPU_RUN_ROI_SMOKE:-}" ]; then
  run_step roi-smoke bash -c "$GPU_RUN_ROI_SMOKE"
else
  run_step roi-smoke "$PY" -c 'import json, sys
from dali_cutmix.pipelines.doctor import smoke_roi_decode
device, timeout, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
status, detail = smoke_roi_decode(device, timeout=timeout)
print(status, detail)
json.dump(dict(device=device, timeout=timeout, status=status, detail=detail), open(path, "w"))
sys.exit(0 if status == "ok" else 1)' "$smoke_device" "$smoke_timeout" "$work/roi.json"
fi
if [ "${last_status:-}" != passed ]; then  # failed, timed out, skipped: no verdict
  decode=full
  export DALI_CUTMIX_DECODE=full
  echo "gpu_run: the ROI smoke test failed, hung or gave no verdict: every later step decodes whole images" \
       "(DALI_CUTMIX_DECODE=full, --decode full)"
else
  decode=${DALI_CUTMIX_DECODE:-roi}
fi
last_status=

# 4. doctor: the native operators are built now (into $DALI_CUTMIX_CACHE); its own ROI test ends within 45 s.
run_step doctor bash -c 'python_=$1; shift; exec "$python_" -m dali_cutmix.cli doctor --json > "$0/doctor.json"' \
  "$work" "$PY"

# 5. The GPU half of the suite that checks in this process (skipped, with its reason, without a GPU).
in_process=(tests/test_stage.py tests/test_mix.py tests/test_padding.py tests/test_pipeline.py tests/test_gpu_graph.py
            tests/test_gpu_training.py tests/test_hot_path.py tests/test_gpu_native_cache.py tests/test_dali_messages.py
            tests/test_doctor.py tests/test_profile.py tests/test_decode_default.py)
run_step tests "$PY" -m pytest -m "gpu and not sanitizer" -q -p no:cacheprovider \
  --junitxml "$work/pytest-tests.xml" "${in_process[@]}"
if [ "$sanitizer" = 1 ]; then
  run_step sanitizer "$PY" -m pytest -m sanitizer -q -p no:cacheprovider \
    --junitxml "$work/pytest-sanitizer.xml" tests/test_gpu_training.py
fi

# 6. A short training run on a generated demo set.
run_step demo "$PY" -c 'import sys; from dali_cutmix.pipelines.demo import write_dataset
write_dataset(sys.argv[1], num_classes=int(sys.argv[2]), train_per_class=int(sys.argv[3]),
              val_per_class=int(sys.argv[4]), size=int(sys.argv[5]))' "$work/demo" "${demo[@]}"
train_command "$work/demo" "$work/train" "$decode"
run_step train "${command[@]}"

# 7. The profile: CutMix first (it carries the targets), then MixUp and switching.
for variant in cutmix mixup switch; do
  profile_command $variant "$work" "$decode"
  run_step "profile-$variant" "${command[@]}"
done

# 8. The rest of the GPU half (trainer and CLI runs in subprocesses), with what is left.
ignored=()
for file in "${in_process[@]}"; do ignored+=(--ignore "$file"); done
run_step tests-cli "$PY" -m pytest -m "gpu and not sanitizer" -q -p no:cacheprovider \
  --junitxml "$work/pytest-tests-cli.xml" "${ignored[@]}" tests

exit $failed
