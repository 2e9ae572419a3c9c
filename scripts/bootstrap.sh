#!/usr/bin/env bash
# Make this machine ready for Colorflow, doing only what is missing:
#   - Debian packages the stack needs: PostgreSQL server binaries (catalog tests), Redis (the Celery
#     broker of `make up EXECUTOR=celery`), Chromium and ChromeDriver (the Instagram browser mode);
#   - .venv, created or refreshed only when requirements.txt changed since it was last installed;
#   - the `colorflow` command in .venv/bin, from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV=.venv
STAMP="$VENV/.requirements.sha256"

missing_debian_packages() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || echo postgresql
    [ -x /usr/bin/redis-server ] || echo redis-server
    [ -x /usr/bin/chromium ] || echo chromium
    [ -x /usr/bin/chromedriver ] || echo chromium-driver
}

packages=$(missing_debian_packages | xargs)
if [ -n "$packages" ]; then
    echo "bootstrap: installing Debian packages: $packages"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages
fi

wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
    echo "bootstrap: installing requirements.txt into $VENV (a few minutes the first time)"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # torch first and alone, so the exact CPU build is taken and nothing pulls a CUDA build.
    "$VENV/bin/pip" install -q "$(grep '^torch==' requirements.txt)"
    "$VENV/bin/pip" install -q -r requirements.txt
    echo "$wanted" > "$STAMP"
fi

# The repository's packages and Airflow plugins are importable from the virtualenv without installing.
site_packages=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD" "$PWD/plugins" > "$site_packages/colorflow.pth"

# The `colorflow` command, declared in pyproject.toml: an editable install, so it runs this checkout.
project_stamp="$VENV/.pyproject.sha256"
wanted_project=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x "$VENV/bin/colorflow" ] || [ "$(cat "$project_stamp" 2>/dev/null)" != "$wanted_project" ]; then
    PYTHONWARNINGS=ignore "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e .
    echo "$wanted_project" > "$project_stamp"
fi
