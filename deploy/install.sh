#!/usr/bin/env bash
# Installs plaza as a systemd service: the binary, the unit, and /etc/plaza/{plaza.env,plaza.json}
# (existing config is never overwritten). Run from the repository root as root:
#   cargo build --release && sudo deploy/install.sh [path/to/plaza.json]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
binary="${PLAZA_BINARY:-$root/target/release/plaza}"
manifest="${1:-$root/examples/todo/plaza.json}"

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
[ -x "$binary" ] || { echo "install.sh: $binary missing; run 'cargo build --release' first" >&2; exit 1; }

"$binary" check --manifest "$manifest"
install -m 0755 "$binary" /usr/local/bin/plaza
install -d -m 0755 /etc/plaza
[ -e /etc/plaza/plaza.env ] || install -m 0640 "$here/plaza.env" /etc/plaza/plaza.env
[ -e /etc/plaza/plaza.json ] || install -m 0644 "$manifest" /etc/plaza/plaza.json
install -m 0644 "$here/plaza.service" /etc/systemd/system/plaza.service

if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now plaza
    systemctl --no-pager status plaza || true
else
    echo "install.sh: systemd is not running here; installed files only"
fi
if grep -q '^PLAZA_ADMIN_TOKEN=change-me' /etc/plaza/plaza.env; then
    echo "install.sh: set PLAZA_ADMIN_TOKEN in /etc/plaza/plaza.env, then: systemctl restart plaza" >&2
fi
