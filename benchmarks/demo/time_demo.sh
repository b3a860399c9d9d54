#!/usr/bin/env bash
# Time the README's demo command (`./scripts/demo.sh`) on a fresh clone of this checkout, setup
# included, and record the machine's load while it runs.
#
#   benchmarks/demo/time_demo.sh [--cold] [--again] [--keep] [--workdir DIR] [-- DEMO ARGS]
#
#   (default)  warm caches: the shared ~/.cache/prodtune (llama-cpp-python wheel, model) is reused;
#              the clone still gets a new .venv and a new .prodtune state dir, like a new user's.
#   --cold     empty caches: PRODTUNE_CACHE, pip's and uv's caches point into the work dir, so the
#              llama-cpp-python wheel is built from its sdist and the model is fetched again.
#   --again    then run the same command a second time in the same clone ("a later run").
#   --keep     leave the clone and its embedded services running (default: stop and remove them).
#   --reuse    measure a later run in the clone a --keep run left in --workdir (after `git pull`
#              there, say): venv, caches, data and services already there.
#
# Demo args default to `--no-serve`. Results: one JSON object per measured command appended to
# benchmarks/demo/results.jsonl, with per-phase seconds taken from the timestamped output
# (setup = until "[setup] ready", pipeline = until the run summary) and load averages sampled
# every 15 s. The full output of each command is kept next to it in the work dir.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COLD=0 AGAIN=0 KEEP=0 REUSE=0 WORK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cold) COLD=1 ;;
    --again) AGAIN=1 ;;
    --keep) KEEP=1 ;;
    --reuse) REUSE=1; KEEP=1 ;;
    --workdir) WORK=$2; shift ;;
    --) shift; break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
DEMO_ARGS=("$@")
[ ${#DEMO_ARGS[@]} -gt 0 ] || DEMO_ARGS=(--no-serve)
WORK=${WORK:-$(mktemp -d /tmp/prodtune-demo-bench.XXXXXX)}
mkdir -p "$WORK"
RESULTS="$ROOT/benchmarks/demo/results.jsonl"
commit=$(git -C "$ROOT" rev-parse HEAD)

if [ "$REUSE" = 0 ]; then
  git clone --quiet --no-local "$ROOT" "$WORK/prodtune"
  git -C "$WORK/prodtune" checkout --quiet "$commit"
fi
cd "$WORK/prodtune"
commit=$(git rev-parse HEAD)

env_args=(env -u PYTHONPATH -u VIRTUAL_ENV -u MLFLOW_TRACKING_URI -u PRODTUNE_HOME -u PRODTUNE_VENV)
if [ "$COLD" = 1 ]; then
  env_args+=(PRODTUNE_CACHE="$WORK/cache" PIP_CACHE_DIR="$WORK/pip-cache" UV_CACHE_DIR="$WORK/uv-cache" PRODTUNE_MODELS_DIR="$WORK/cache/models")
fi

sample_load() {  # one "epoch-seconds load1" line every 15 s until killed
  while :; do echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg)" >>"$1"; sleep 15; done
}

measure() {  # $1 = label; runs the README command, timestamps every output line
  local label=$1 log="$WORK/$1.log" loads="$WORK/$1.load" start end rc=0
  : >"$loads"
  sample_load "$loads" & local sampler=$!
  start=$(date +%s.%N)
  # stdbuf: line-buffered, so each line gets the time it was printed.
  "${env_args[@]}" stdbuf -oL -eL ./scripts/demo.sh "${DEMO_ARGS[@]}" 2>&1 \
    | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >"$log" || rc=$?
  end=$(date +%s.%N)
  kill "$sampler" 2>/dev/null || true
  python3 - "$label" "$log" "$loads" "$start" "$end" "$rc" "$commit" "$COLD" "$RESULTS" "${DEMO_ARGS[*]}" <<'PY'
import json, os, platform, sys
label, log, loads, start, end, rc, commit, cold, results, args = sys.argv[1:]
start, end = float(start), float(end)
setup_end = pipeline_end = None
for line in open(log, encoding="utf-8", errors="replace"):
    stamp, _, text = line.partition(" ")
    text = __import__("re").sub(r"\x1b\[[0-9;]*m", "", text)  # setup.sh prints "[setup]" in bold
    if "[setup] ready" in text:
        setup_end = float(stamp)
    if "prodtune run " in text and "done in" in text:
        pipeline_end = float(stamp)
samples = [float(x.split()[1]) for x in open(loads) if x.strip()]
rec = {
    "label": label, "commit": commit[:12], "cold_caches": cold == "1", "command": f"./scripts/demo.sh {args}",
    "exit_status": int(rc), "total_s": round(end - start, 1),
    "setup_s": round(setup_end - start, 1) if setup_end else None,
    "pipeline_s": round(pipeline_end - setup_end, 1) if setup_end and pipeline_end else None,
    "load1_mean": round(sum(samples) / len(samples), 2) if samples else None,
    "load1_max": max(samples) if samples else None, "cores": os.cpu_count(),
    "date_utc": __import__("datetime").datetime.utcfromtimestamp(start).strftime("%Y-%m-%d %H:%M"),
    "host": platform.node(), "log": log,
}
with open(results, "a") as fh:
    fh.write(json.dumps(rec) + "\n")
print(json.dumps(rec, indent=2))
PY
  return "$rc"
}

status=0
if [ "$REUSE" = 1 ]; then measure later || status=$?; else measure first || status=$?; fi
if [ "$AGAIN" = 1 ] && [ "$status" = 0 ]; then measure again || status=$?; fi
if [ "$KEEP" = 0 ]; then
  "${env_args[@]}" .venv/bin/prodtune services stop >/dev/null 2>&1 || true
  cd / && rm -rf "$WORK/prodtune" "$WORK/cache" "$WORK/pip-cache"
  echo "logs kept in $WORK" >&2
else
  echo "clone kept: $WORK/prodtune (services still running)" >&2
fi
exit "$status"
