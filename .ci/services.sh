#!/usr/bin/env bash
# Services the test suite uses for real, from Debian packages:
#   PostgreSQL (the review store runs its whole suite on it too)  -> .ci/postgres.sh
#   headless Chromium (the review web app's browser test)         -> /usr/bin/chromium
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/postgres.sh
if [[ ! -x /usr/bin/chromium ]]; then
    SUDO=""
    [[ "$(id -u)" != 0 ]] && SUDO="sudo"
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
/usr/bin/chromium --version
