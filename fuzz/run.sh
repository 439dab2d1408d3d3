#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), then as long again of corruption fuzzing
# of a stopped log's sled store. Not part of CI: the targets need the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`).
#
# Each target's corpus grows in fuzz/corpus/TARGET (not committed), starting from the committed
# inputs in fuzz/seeds/TARGET and fuzz/regressions/TARGET. A crash leaves its input in
# fuzz/artifacts/TARGET: fix the cause, then keep the input in fuzz/regressions/TARGET, where
# `cargo test --test fuzz_regressions` runs it on every build.
#
#   fuzz/run.sh 600          every target for ten minutes
#   fuzz/run.sh 60 record    one target
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(wire record jsonl timestamp base64url admin proofs corruption)
fi

failed=()
for target in "${targets[@]}"; do
  if [ "$target" = corruption ]; then
    # Random truncations, flips and zeroed ranges of a stopped log's store, as many as fit in
    # the time (about 40 a second in a release build): each must be refused or reported.
    cases=$((seconds * 40))
    echo "== corruption: $cases damaged copies of a stopped store"
    (cd .. && NEURON_CORRUPTION_CASES="$cases" cargo test --release -p neuron-events --test crash \
      a_damaged_store_is_refused_or_reported_never_taken_for_a_shorter_log) || failed+=("$target")
    continue
  fi
  echo "== $target: $seconds s"
  mkdir -p "corpus/$target" "seeds/$target" "regressions/$target"
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ||
    failed+=("$target")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (inputs in fuzz/artifacts)"
  exit 1
fi
echo "every target ran clean"
