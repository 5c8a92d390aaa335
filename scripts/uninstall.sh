#!/usr/bin/env bash
# Removes what scripts/install.sh installed (docs/service.md).
#
#   sudo scripts/uninstall.sh            # keeps /etc/affectd and /var/lib/affectd (models, sessions)
#   sudo scripts/uninstall.sh --purge    # removes them too
#   DESTDIR=/tmp/stage scripts/uninstall.sh [--purge]   # from a staging directory
#
# The affectd system user stays (as with sysusers.d packages), so files it owns elsewhere keep
# a name.
set -euo pipefail
destdir=${DESTDIR:-}
purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: uninstall.sh [--purge]" >&2; exit 2 ;;
esac
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
  echo "uninstall.sh: run as root, or set DESTDIR" >&2; exit 1
fi
d() { printf '%s%s' "$destdir" "$1"; }

if [ -z "$destdir" ] && command -v systemctl >/dev/null; then
  systemctl disable --now affectd.service 2>/dev/null || true
  for unit in $(systemctl list-units --all --plain --no-legend 'affectd@*.service' | awk '{print $1}'); do
    systemctl disable --now "$unit" 2>/dev/null || true
  done
fi
rm -f "$(d /usr/bin/affectd)" \
      "$(d /usr/lib/systemd/system/affectd.service)" \
      "$(d /usr/lib/systemd/system/affectd@.service)" \
      "$(d /usr/lib/sysusers.d/affectd.conf)" \
      "$(d /usr/lib/tmpfiles.d/affectd.conf)" \
      "$(d /etc/affectd/affectd.toml.new)"
rm -rf "$(d /usr/lib/affectd)" "$(d /usr/share/doc/affectd)"
if [ "$purge" = 1 ]; then
  rm -rf "$(d /etc/affectd)" "$(d /var/lib/affectd)"
else
  echo "uninstall.sh: kept /etc/affectd and /var/lib/affectd (models, sessions); --purge removes them"
fi
if [ -z "$destdir" ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
fi
