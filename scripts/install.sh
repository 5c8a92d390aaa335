#!/usr/bin/env bash
# Installs affectd as a systemd service on a Debian-like machine (docs/service.md).
#
#   sudo scripts/install.sh [--binary PATH] [--native DIR] [--models DIR] [--keep-symbols]
#   DESTDIR=/tmp/stage scripts/install.sh ...   # stage only: no users, no systemctl
#
# Lays out:
#   /usr/bin/affectd                              the binary, stripped (rpath
#                                                 $ORIGIN/../lib/affectd); --keep-symbols keeps
#                                                 the line tables for debugging
#   /usr/lib/affectd/                             liblsl and libonnxruntime (pinned builds)
#   /usr/lib/systemd/system/affectd.service       the hardened unit
#   /usr/lib/systemd/system/affectd@.service      the same, one instance per headset
#                                                 (/etc/affectd/NAME.toml, /var/lib/affectd/NAME)
#   /usr/lib/sysusers.d/affectd.conf              the affectd system user
#   /usr/lib/tmpfiles.d/affectd.conf              /var/lib/affectd/{models,sessions}
#   /etc/affectd/affectd.toml                     config (an existing one is kept; the new
#                                                 default goes beside it as affectd.toml.new)
#   /var/lib/affectd/models/                      the models and their cards
#   /usr/share/doc/affectd/                       service.md, config.md (config/README.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
destdir=${DESTDIR:-}
binary="${CARGO_TARGET_DIR:-$root/target}/release/affectd"
native="$root/.native/lib"
models="$root/models"
strip=1

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --native) native=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --keep-symbols) strip=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done

die() { echo "install.sh: $*" >&2; exit 1; }
[ -x "$binary" ] || die "no affectd binary at $binary (build it: cargo build --release, or pass --binary)"
[ -d "$native" ] || die "no native library directory $native (run scripts/setup, or pass --native)"
ls "$native"/liblsl.so.* >/dev/null 2>&1 || die "no liblsl.so.* in $native"
ls "$native"/libonnxruntime.so.* >/dev/null 2>&1 || die "no libonnxruntime.so.* in $native"
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
  die "run as root to install into /, or set DESTDIR to stage into a directory"
fi

d() { printf '%s%s' "$destdir" "$1"; }
say() { echo "install.sh: $*"; }

install -Dm755 "$binary" "$(d /usr/bin/affectd)"
# The release binary carries line tables (~196 MB); stripped it is ~17 MB.
[ "$strip" = 1 ] && strip "$(d /usr/bin/affectd)"

# Libraries with their symlinks (liblsl.so.2 is liblsl's soname, what the binary asks for).
install -d -m755 "$(d /usr/lib/affectd)"
for f in "$native"/liblsl.so* "$native"/libonnxruntime.so*; do
  if [ -L "$f" ]; then
    ln -sfn "$(readlink "$f")" "$(d /usr/lib/affectd)/$(basename "$f")"
  else
    install -m755 "$f" "$(d /usr/lib/affectd)/$(basename "$f")"
  fi
done

install -Dm644 "$root/systemd/affectd.service" "$(d /usr/lib/systemd/system/affectd.service)"
install -Dm644 "$root/systemd/affectd@.service" "$(d /usr/lib/systemd/system/affectd@.service)"
install -Dm644 "$root/systemd/affectd.sysusers" "$(d /usr/lib/sysusers.d/affectd.conf)"
install -Dm644 "$root/systemd/affectd.tmpfiles" "$(d /usr/lib/tmpfiles.d/affectd.conf)"

install -d -m755 "$(d /etc/affectd)"
if [ -e "$(d /etc/affectd/affectd.toml)" ]; then
  install -m644 "$root/systemd/affectd.toml" "$(d /etc/affectd/affectd.toml.new)"
  say "kept the existing /etc/affectd/affectd.toml; the new default is affectd.toml.new beside it"
else
  install -m644 "$root/systemd/affectd.toml" "$(d /etc/affectd/affectd.toml)"
fi

install -d -m750 "$(d /var/lib/affectd)" "$(d /var/lib/affectd/models)" "$(d /var/lib/affectd/sessions)"
found=0
for f in "$models"/*.onnx "$models"/*.md "$models"/*.json; do
  [ -f "$f" ] || continue
  # Temp name then rename, so a running daemon never sees a half-written model.
  install -m640 "$f" "$(d /var/lib/affectd/models)/.$(basename "$f").tmp"
  mv -f "$(d /var/lib/affectd/models)/.$(basename "$f").tmp" "$(d /var/lib/affectd/models)/$(basename "$f")"
  found=1
done
[ "$found" = 1 ] || say "warning: no models in $models; put one at /var/lib/affectd/models/affectd-int8.onnx"

install -d -m755 "$(d /usr/share/doc/affectd)"
[ -f "$root/docs/service.md" ] && install -m644 "$root/docs/service.md" "$(d /usr/share/doc/affectd/service.md)"
install -m644 "$root/config/README.md" "$(d /usr/share/doc/affectd/config.md)"

if [ -n "$destdir" ]; then
  say "staged into $destdir (no users created, systemd not touched)"
  exit 0
fi

systemd-sysusers /usr/lib/sysusers.d/affectd.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/affectd.conf
chown -R affectd:affectd /var/lib/affectd
chown root:affectd /etc/affectd/affectd.toml
chmod 640 /etc/affectd/affectd.toml
/usr/bin/affectd check-config /etc/affectd/affectd.toml
systemctl daemon-reload
say "installed. Start it with: systemctl enable --now affectd"
