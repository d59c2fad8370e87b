#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test (unit tests, and
# integration tests that start their own HAProxy processes and in-process Kafka clusters).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH; fi
scripts/install-dependencies.sh
swift build --build-tests
swift test --skip-build "$@"
