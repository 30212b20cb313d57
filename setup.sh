#!/usr/bin/env bash
# Sets up a development environment in .venv: the Debian packages the build and the tests need,
# then the package itself in editable mode with its test dependencies. Safe to run again, and
# quick when everything is there.
#
# - libcap-dev: the headers python-prctl builds against.
# - postgresql: the real server that the tests of the PostgreSQL journal start in a temporary
#   directory of their own (occasional.testing.postgres, issue 12). The psycopg wheel brings its
#   own libpq, so no client library is needed.
# - erlang-base: Erlang/OTP (erl, erlc, epmd). A runtime started with node= runs one Erlang VM
#   beside its central services for distribution (issue 13); the tests start real Erlang nodes.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
[ -e /usr/include/sys/capability.h ] || missing+=(libcap-dev)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
command -v erlc >/dev/null || missing+=(erlang-base)

if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
