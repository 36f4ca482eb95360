# Sourced by scripts/serve.sh and scripts/test.sh: a project venv with Glimpse installed.
#   GLIMPSE_EXTRAS: the optional dependencies to install (comma-separated; "" for none).
#   GLIMPSE_DEBS: the Debian packages the caller needs (redis-server, chromium, ...).
# A venv that has the extras asked for already (and a pyproject.toml no newer) is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
EXTRAS="${GLIMPSE_EXTRAS-}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.glimpse-installed"
have="$(cat "$stamp" 2>/dev/null || true)"
need_install=0
[ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ] || need_install=1
for extra in ${EXTRAS//,/ }; do
  case ",$have," in *",$extra,"*) ;; *) need_install=1 ;; esac
done
if [ "$need_install" = 1 ]; then
  # Keep what was installed before: the stamp lists every extra the venv has.
  all="$(printf '%s\n' ${have//,/ } ${EXTRAS//,/ } | sort -u | paste -sd, -)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${all:+[$all]}"
  echo "$all" > "$stamp"
fi
missing=""
for deb in ${GLIMPSE_DEBS-}; do
  case "$deb" in
    chromium) [ -x /usr/bin/chromium ] || missing="$missing chromium" ;;
    *) command -v "$deb" >/dev/null 2>&1 || missing="$missing $deb" ;;
  esac
done
if [ -n "$missing" ]; then
  echo "installing Debian's$missing" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
export PATH="$ROOT/.venv/bin:$PATH"
