#!/bin/sh
# Install ccd as a systemd service (what `make install` runs). Idempotent: run it again to
# upgrade; an existing /etc/ccd/ccd.toml or /etc/ccd/ccd.env is never overwritten.
#
#   sudo make install                      # or: sudo sh scripts/install.sh
#   sh scripts/install.sh --dry-run        # print every step, change nothing
#   DESTDIR=/tmp/stage sh scripts/install.sh --no-venv   # stage the files under a root
#
# What it does (paths under $DESTDIR when set):
#   /opt/ccd/.venv            a virtualenv with ccd and its dependencies (python3 -m venv)
#   user and group ccd        a system user without a shell or home (useradd --system)
#   /etc/ccd/ccd.toml         from ccd/example.toml, root:ccd 0640, only if absent
#   /etc/ccd/ccd.env          the secrets file, root:root 0600, only if absent
#   /etc/systemd/system/ccd.service   the unit (scripts/ccd.service)
#   /usr/share/doc/ccd/       README.md (the unit's Documentation=) and example.toml
# With DESTDIR set, or when not run as root, nothing outside $DESTDIR is touched: no user
# is created, no owner changed, systemd is not told (the steps are printed instead).
set -eu

PREFIX=${PREFIX:-/opt/ccd}
DESTDIR=${DESTDIR:-}
PYTHON=${PYTHON:-python3}
DRY_RUN=0
VENV=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --no-venv) VENV=0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR%/}
# Root-only steps (user, owners, systemctl) only for a real install as root.
SYSTEM=0
if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ]; then SYSTEM=1; fi

say() { printf '%s\n' "$*"; }
run() {
  say "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}
system() {  # a step that needs root on the real system
  if [ "$SYSTEM" = 1 ]; then run "$@"; else say "(skipped, not a system install) $*"; fi
}

say "ccd: installing from $SRC into ${ROOT:-/} (prefix $PREFIX)"

# 1. The service user.
if getent passwd ccd >/dev/null 2>&1; then
  say "user ccd exists"
else
  system useradd --system --user-group --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin --comment "ccd call-center daemon" ccd
fi

# 2. The virtualenv, with ccd installed into it (upgraded when run again).
if [ "$VENV" = 1 ]; then
  if [ ! -x "$ROOT$PREFIX/.venv/bin/python" ]; then
    run mkdir -p "$ROOT$PREFIX"
    run "$PYTHON" -m venv "$ROOT$PREFIX/.venv"
  fi
  run "$ROOT$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
  run "$ROOT$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade "$SRC"
else
  say "(skipped: --no-venv) virtualenv $ROOT$PREFIX/.venv"
fi

# 3. Configuration and secrets: created once, never overwritten.
run install -d -m 0755 "$ROOT/etc/ccd"
if [ -e "$ROOT/etc/ccd/ccd.toml" ]; then
  say "keeping $ROOT/etc/ccd/ccd.toml (compare with $SRC/ccd/example.toml)"
else
  run install -m 0640 "$SRC/ccd/example.toml" "$ROOT/etc/ccd/ccd.toml"
  system chown root:ccd "$ROOT/etc/ccd/ccd.toml"
fi
if [ -e "$ROOT/etc/ccd/ccd.env" ]; then
  say "keeping $ROOT/etc/ccd/ccd.env"
else
  if [ "$DRY_RUN" = 0 ]; then
    (umask 077 && cat >"$ROOT/etc/ccd/ccd.env" <<'EOF'
# ccd's secrets, read by systemd (EnvironmentFile=) for the daemon; mode 0600, root only.
# Each overrides the configuration file's value, and none is ever logged or shown.
#CCD_ESL_PASSWORD=
#CCD_REDIS_URL=redis://:password@127.0.0.1:6379/0
# The bearer token of /calls/... and of POSTs (at least 16 characters), e.g. from
#   python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
#CCD_HTTP_TOKEN=
EOF
    )
  fi
  say "+ write $ROOT/etc/ccd/ccd.env (0600, commented template)"
  run chmod 0600 "$ROOT/etc/ccd/ccd.env"
fi

# 4. The unit and the documentation it points at.
run install -d -m 0755 "$ROOT/etc/systemd/system" "$ROOT/usr/share/doc/ccd"
run install -m 0644 "$SRC/scripts/ccd.service" "$ROOT/etc/systemd/system/ccd.service"
run install -m 0644 "$SRC/README.md" "$ROOT/usr/share/doc/ccd/README.md"
run install -m 0644 "$SRC/ccd/example.toml" "$ROOT/usr/share/doc/ccd/example.toml"
if [ "$SYSTEM" = 1 ] && [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
fi

say "ccd: installed. Next: edit /etc/ccd/ccd.toml and /etc/ccd/ccd.env, then"
say "  $PREFIX/.venv/bin/ccd config check /etc/ccd/ccd.toml"
say "  systemctl enable --now ccd"
