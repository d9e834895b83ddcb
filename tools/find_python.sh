#!/usr/bin/env sh
# Print the path of a working Python >= 3.12, or fail with a message.
# Order: $PYTHON, python3.12, python3.13, python3, then pyenv's installed versions.
ok() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
if [ -n "${PYTHON:-}" ]; then
    p=$(command -v "$PYTHON" 2>/dev/null) && ok "$p" && { echo "$p"; exit 0; }
    echo "error: PYTHON=$PYTHON is not a working Python >= 3.12" >&2
    exit 1
fi
for cand in python3.12 python3.13 python3.14 python3; do
    p=$(command -v "$cand" 2>/dev/null) || continue
    if ok "$p"; then echo "$p"; exit 0; fi
done
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for p in "$root"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    [ -x "$p" ] && ok "$p" && { echo "$p"; exit 0; }
done
echo "error: no Python >= 3.12 found; install one or run 'make PYTHON=/path/to/python3.12 ...'" >&2
exit 1
