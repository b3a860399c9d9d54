#!/usr/bin/env bash
# Film the running demo: `prodtune route` output, then the Streamlit UI (headless Chromium)
# describing a product title and answering a question with its sources and scores; assemble
# docs/media/demo.mp4 and docs/media/demo.gif with ffmpeg.
#
#   ./scripts/demo.sh                  # in another shell: leaves the API (:8000) and UI (:8501) up
#   ./scripts/demo-video.sh [--title T] [--question Q] [--out docs/media]
#
# The title and question default to a real product of the latest run's catalogue.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/media TITLE="" QUESTION="" UI=${PRODTUNE_UI_URL:-http://127.0.0.1:8501}
API=${PRODTUNE_API_URL:-http://127.0.0.1:8000}
while [ $# -gt 0 ]; do
  case "$1" in
    --title) TITLE=$2; shift ;;
    --question) QUESTION=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-$PWD}

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[video] installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "[video] needs: ${need[*]} (apt-get install -y ${need[*]})" >&2; exit 1
  fi
fi

curl -fsS "$API/readyz" >/dev/null || { echo "[video] the API at $API is not ready: start ./scripts/demo.sh first" >&2; exit 1; }
curl -fsS "$UI/_stcore/health" >/dev/null || { echo "[video] the UI at $UI is not up" >&2; exit 1; }

if [ -z "$TITLE" ] || [ -z "$QUESTION" ]; then
  # A real product of the latest run: the describer gets its title, the QA model a question on it.
  read -r -d '' pick <<'PY' || true
import glob, os, sys
import pandas as pd
files = sorted(glob.glob("local_outputs/*/prep/*/trn-processed.parquet"), key=os.path.getmtime)
if not files:
    sys.exit("no trn-processed.parquet under local_outputs/: run the demo first")
df = pd.read_parquet(files[-1])
df = df[df["title"].str.len().between(20, 60)]
# no emoji or symbol glyphs (arrows, dingbats): Debian's Chromium has no font for them (tofu boxes)
df = df[~df["title"].str.contains("[\u2190-\u2bff\U0001f000-\U0001faff]", regex=True)]
row = df.iloc[len(df) // 3]
print(row["title"])
print(f"What is the {row['title']} made of?")
PY
  mapfile -t picked < <("$PY" -c "$pick")
  TITLE=${TITLE:-${picked[0]}}
  QUESTION=${QUESTION:-${picked[1]}}
fi
echo "[video] title: $TITLE" >&2
echo "[video] question: $QUESTION" >&2

frames=$(mktemp -d /tmp/prodtune-video.XXXXXX)
trap 'rm -rf "$frames"' EXIT
"$PY" scripts/demo_video.py --frames "$frames" --ui "$UI" --title "$TITLE" --question "$QUESTION"

mkdir -p "$OUT"
# MP4: H.264, 1280 wide, 10 fps is plenty for screenshots; crf 30 keeps text sharp and the file small.
ffmpeg -loglevel error -y -f concat -safe 0 -i "$frames/frames.txt" \
  -vf "fps=10,scale=1280:-2:flags=lanczos,format=yuv420p" -c:v libx264 -preset slow -crf 30 \
  -movflags +faststart "$OUT/demo.mp4"
# GIF for the README: 800 wide, 4 fps, one 128-colour palette for the whole clip.
ffmpeg -loglevel error -y -f concat -safe 0 -i "$frames/frames.txt" \
  -vf "fps=4,scale=800:-1:flags=lanczos,split[a][b];[a]palettegen=max_colors=128:stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=3" \
  "$OUT/demo.gif"
ls -l "$OUT/demo.mp4" "$OUT/demo.gif" >&2
