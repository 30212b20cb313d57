#!/usr/bin/env bash
# Sets up a development environment in .venv: the libcap headers that
# python-prctl builds against (Debian's libcap-dev), then the package itself
# in editable mode with its test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -e /usr/include/sys/capability.h ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing libcap-dev (python-prctl builds against it)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libcap-dev >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
