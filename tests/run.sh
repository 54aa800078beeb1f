#!/usr/bin/env bash
# Runs every mailbag test: unit, integration (against a private Dovecot that
# tests/common starts on free loopback ports), benches/examples as tests, and
# doc tests.
#
# Usage: tests/run.sh [--deps-only] [extra cargo test args...]
#   --deps-only  only install missing system packages, run no tests
#   extra args   passed to both `cargo test --lib --bins --tests` and
#                `cargo test --doc` (e.g. `-- --nocapture`)
#
# Benchmarks (benches/) are not run here: they time real peers (getmail6, fetchmail, mbsync)
# for minutes and belong in docs/performance.md, not in a pass/fail run. `cargo clippy
# --all-targets` in .ci/run still compiles them.
#
# When the system packages the tests need are missing and this script can
# install them (apt-get present, running as root or with password-less sudo),
# it installs just the missing ones. Without Dovecot the integration tests
# print "SKIPPED (dovecot not found)" and pass, unless MAILBAG_REQUIRE_DOVECOT=1;
# likewise the keyring test without dbus-run-session and gnome-keyring-daemon,
# unless MAILBAG_REQUIRE_KEYRING=1 (or MAILBAG_REQUIRE_DOVECOT=1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# NOTE: dbus-daemon (dbus-run-session) and gnome-keyring (gnome-keyring-daemon) give the
# setup test a real Secret Service in a private D-Bus session.
PACKAGES=(dovecot-imapd dovecot-pop3d openssl libssl-dev libdbus-1-dev pkg-config dbus-daemon gnome-keyring)

# Prints the packages from PACKAGES that are not installed.
missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        if command -v dpkg-query >/dev/null 2>&1; then
            if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
                echo "$pkg"
            fi
        else
            # NOTE: no dpkg: fall back to looking for the main binaries.
            case "$pkg" in
                dovecot-imapd | dovecot-pop3d)
                    command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || echo "$pkg" ;;
                openssl) command -v openssl >/dev/null 2>&1 || echo "$pkg" ;;
                pkg-config) command -v pkg-config >/dev/null 2>&1 || echo "$pkg" ;;
                dbus-daemon) command -v dbus-run-session >/dev/null 2>&1 || echo "$pkg" ;;
                gnome-keyring) command -v gnome-keyring-daemon >/dev/null 2>&1 || echo "$pkg" ;;
            esac
        fi
    done
}

install_missing() {
    local missing
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "run.sh: missing packages (${missing[*]}) and no root/sudo to install them; continuing" >&2
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: missing packages (${missing[*]}) and no apt-get; continuing" >&2
        return 0
    fi
    echo "run.sh: installing ${missing[*]}" >&2
    # NOTE: keep the package's own system-wide Dovecot from being started
    # (policy-rc.d exit 101 = "action forbidden"); the tests start their own.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        if printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null \
            && "${sudo[@]}" chmod 755 "$policy"; then
            added_policy=1
        fi
    fi
    local rc=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
    if [ "$rc" -eq 0 ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null || rc=$?
    fi
    if [ "$added_policy" -eq 1 ]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    if [ "$rc" -ne 0 ]; then
        echo "run.sh: installing packages failed (exit $rc); continuing" >&2
    fi
}

if [ "${1:-}" = "--deps-only" ]; then
    install_missing
    exit 0
fi

install_missing

status=0
# NOTE: doc tests first, so that the run's closing line is the main suite's summary.
cargo test --doc "$@" || status=$?
cargo test --lib --bins --tests --no-fail-fast "$@" || status=$?
exit "$status"
