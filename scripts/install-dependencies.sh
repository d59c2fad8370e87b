#!/usr/bin/env bash
# Installs what mapbridge needs to build, test and run its demo on Debian (bookworm), when missing:
# HAProxy, librdkafka (with its mock cluster), pkg-config, curl and socat for the demo, and
# docker-compose, systemd-analyze and promtool, which the tests use to check the deployment examples. Swift itself is not packaged by
# Debian: it must be installed from swift.org (6.x); this script says so when it is missing.
set -euo pipefail

missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v socat >/dev/null 2>&1 || missing+=(socat)
# The tests check the deployment examples with the tools that read them.
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# promtool checks the example Prometheus alerting rules.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if ! pkg-config --exists rdkafka 2>/dev/null || [ ! -f /usr/include/librdkafka/rdkafka_mock.h ]; then
    missing+=(librdkafka-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        if [ -x "$candidate/swift" ]; then
            echo "swift is in $candidate: add it to PATH (export PATH=$candidate:\$PATH)" >&2
            exit 1
        fi
    done
    echo "swift 6 is required and Debian does not package it: install it from https://www.swift.org/install/linux/" >&2
    exit 1
fi
