#!/usr/bin/env bash
# Runs the benchmark suite of docs/benchmarks.md in order and redraws
# docs/benchmarks.png from the figures the benches save under
# target/adflow-bench/results/. Each bench also runs on its own:
#   cargo bench --bench ysb | engines | scale | backfill | chart
# Environment: ADFLOW_PYTHON names a Python with duckdb and apache-flink
# (default python3); the benches' own variables pass through (see each
# bench's header comment), e.g. ADFLOW_SCALE_EVENTS=1000000,10000000.
set -euo pipefail
cd "$(dirname "$0")/.."
for bench in ysb engines scale; do
  echo "==> cargo bench --bench $bench"
  cargo bench --bench "$bench"
done
echo "==> cargo bench --bench chart"
cargo bench --bench chart
