#!/usr/bin/env bash
# Installs what cardswitch needs on a Debian machine when it is missing:
# PostgreSQL server binaries (the embedded default and the tests run them)
# and xmllint (the tests validate answers against proto-spec/xsd).
set -euo pipefail

have_pg_server() {
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
have_pg_server || missing+=(postgresql)
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's postgresql package starts a cluster of its own; cardswitch never uses it.
command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
}
