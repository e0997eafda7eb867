#!/usr/bin/env bash
# Install what perf/bench_http.py and perf/rss_probe.py need, on a clean Debian machine:
#   - Debian: wrk (load generator), nginx-light (a peer; run by the benchmark in the foreground
#     from a generated config, never as a service), libuv1 (socketify's native library needs it);
#   - a benchmark venv at perf/.venv with the peers pinned in perf/requirements-peers.txt:
#     uvicorn + uvloop + httptools, granian, socketify, starlette, hdrhistogram.
# None of this is a dependency of kestrel. Safe to run again: it only installs what is missing.
#   bash perf/setup_peers.sh            # PYTHON=python3.11 bash perf/setup_peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=perf/.venv

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || need_apt+=(nginx-light)
[ -e /usr/lib/x86_64-linux-gnu/libuv.so.1 ] || ldconfig -p | grep -q 'libuv\.so\.1 ' \
    || need_apt+=(libuv1)
if ((${#need_apt[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "== apt-get install ${need_apt[*]}"
    $SUDO apt-get update
    # Installing nginx starts no service where there is no init system; where there is one,
    # the benchmark does not use it (it runs its own nginx with -p/-c on a free port).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need_apt[@]}"
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"need Python >= 3.11 for the benchmark venv, not {sys.version.split()[0]}")
PY

if [ ! -x "$VENV/bin/python" ]; then
    echo "== venv $VENV ($("$PYTHON" --version))"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
echo "== peers into $VENV"
"$VENV/bin/python" -m pip install -q -r perf/requirements-peers.txt

echo "== check"
"$VENV/bin/python" - <<'PY'
import importlib, importlib.metadata as m, platform
for mod in ("uvicorn", "uvloop", "httptools", "granian", "socketify"):
    importlib.import_module(mod)  # socketify loads its native library here
    print(f"  {mod} {m.version(mod)}")
print(f"  CPython {platform.python_version()}")
PY
echo "  $(wrk --version 2>&1 | head -1)"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
echo "  $("$NGINX" -v 2>&1)"
