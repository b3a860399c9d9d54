#!/bin/sh
# Second init container of the Ollama pod (ollama image): create every model staged by
# fetch_models.py, against a server bound to loopback only, then stop it. The models land in
# OLLAMA_MODELS on the PVC, so the main container starts with them. A model whose staged version
# was already created (stamp `.created`) is skipped; the GGUF is deleted once Ollama holds its
# own copy of the blob, so the PVC does not keep two.
set -eu
export OLLAMA_HOST=127.0.0.1:11434
ollama serve >/tmp/ollama-import.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
i=0
until ollama list >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 120 ]; then cat /tmp/ollama-import.log; echo "ollama did not start" >&2; exit 1; fi
  sleep 1
done
for dir in "$IMPORT_DIR"/*/; do
  [ -f "$dir/.version" ] && [ -f "$dir/.name" ] || continue
  name=$(cat "$dir/.name")
  version=$(cat "$dir/.version")
  if [ "$(cat "$dir/.created" 2>/dev/null || true)" = "$version" ] && ollama show "$name" >/dev/null 2>&1; then
    echo "$name: version $version already created"
    continue
  fi
  if [ ! -f "$dir/model.gguf" ]; then
    # The model vanished from Ollama after its GGUF was removed: force a fresh download.
    echo "$name: missing from ollama and no GGUF staged; re-downloading on restart" >&2
    rm -f "$dir/.version" "$dir/.created"
    exit 1
  fi
  echo "$name: ollama create (version $version)"
  (cd "$dir" && ollama create "$name" -f Modelfile)
  echo "$version" >"$dir/.created"
  rm -f "$dir/model.gguf"
done
ollama list
