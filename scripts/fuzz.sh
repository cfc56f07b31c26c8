#!/usr/bin/env bash
# Runs the fuzz targets of tests/fuzz.rs for a long time (default: one hour in all, split
# evenly over the five targets), in release mode, on a fresh random seed.
#
#   scripts/fuzz.sh [TOTAL_SECS]        e.g. scripts/fuzz.sh 600 for ten minutes
#
# Each target's tally (cases, outcomes, largest allocation, slowest case) is printed and
# appended to fuzz-report.jsonl. A failing case prints its FUZZ_SEED and case number (which
# reproduce it) and leaves its input in the system's temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
total_secs=${1:-3600}
targets=5
export FUZZ_SECS=$((total_secs / targets))
export FUZZ_SEED=${FUZZ_SEED:-$(date +%s)}
export FUZZ_REPORT=${FUZZ_REPORT:-fuzz-report.jsonl}
echo "fuzzing ${FUZZ_SECS}s per target, FUZZ_SEED=$FUZZ_SEED, tallies in $FUZZ_REPORT"
cargo test --release --test fuzz -- --nocapture --test-threads 1
