#!/usr/bin/env bash
# Make PostgreSQL's server binaries (initdb, pg_ctl, postgres) available for the review-store tests.
#
# Installs the Debian package 'postgresql' when no initdb is found ($MOE_POSTGRES_BIN, the PATH, or
# /usr/lib/postgresql/*/bin). The package's own cluster is not started: the tests run a throwaway
# server of their own (review.testing.TemporaryPostgres) on a free port in a temporary folder, as the
# 'postgres' user when run as root. Prints the binaries' folder; export MOE_REQUIRE_POSTGRES=1 in CI
# so a missing server fails the tests instead of skipping them.
set -euo pipefail

find_bin() {
    if [[ -n "${MOE_POSTGRES_BIN:-}" && -x "${MOE_POSTGRES_BIN}/initdb" ]]; then
        echo "${MOE_POSTGRES_BIN}"; return 0
    fi
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "${newest}" && -x "${newest}/initdb" ]]; then
        echo "${newest}"; return 0
    fi
    return 1
}

if bin=$(find_bin); then
    echo "${bin}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: no PostgreSQL binaries and no apt-get to install them" >&2
    exit 1
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    SUDO="sudo"
fi
# keep the package's post-install from starting a cluster (no init system in containers)
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' | ${SUDO} tee "${policy}" >/dev/null
    ${SUDO} chmod +x "${policy}"
    created_policy=1
fi
trap '[[ ${created_policy} == 1 ]] && ${SUDO} rm -f "${policy}"' EXIT
${SUDO} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends postgresql >/dev/null

if bin=$(find_bin); then
    echo "${bin}"
else
    echo "postgres.sh: installed 'postgresql' but found no initdb" >&2
    exit 1
fi
