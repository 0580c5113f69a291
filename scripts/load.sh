#!/usr/bin/env bash
# Builds the `auth-load` load generator (package auth-tests) in release mode and runs it on
# loopback: the same axum app without and with AuthLayer, alternating, requests/s and ratio.
#
# Usage: scripts/load.sh [--duration-secs N] [--connections K] [--rounds R]
# (defaults: 5 s per run, 32 connections, 5 rounds; any arguments replace all of them).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
    set -- --duration-secs 5 --connections 32 --rounds 5
fi
cargo build --release -p auth-tests --bin auth-load
exec cargo run --release --quiet -p auth-tests --bin auth-load -- "$@"
