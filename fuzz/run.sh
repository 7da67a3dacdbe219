#!/bin/sh
# fuzz/run.sh TARGET... -- run each libFuzzer target of build-fuzz/ for
# $FUZZ_TIME seconds (default 60), one after the other, each on its scratch
# corpus build-fuzz/corpus/TARGET (kept between runs, not committed) merged
# with the committed seeds fuzz/corpus/TARGET.  Prints the executions of
# each target and ends with a summary in busted's format (one success per
# target that ran clean), which .ci/run counts.  Exit status 1 when a target
# found a crash, a leak or a timeout (the input is in build-fuzz/artifacts/).
set -u
FUZZ_TIME=${FUZZ_TIME:-60}
FZ=${FZ:-build-fuzz}
ok=0
bad=0
start=$(date +%s)
mkdir -p "$FZ/artifacts"

# per-target options: the largest input, and a dictionary when there is one
options() {
  case $1 in
  record_decode) echo "-max_len=512 -timeout=10" ;;
  msgpack_decode) echo "-max_len=1024 -timeout=10" ;;
  jsonl_import) echo "-max_len=1024 -timeout=10 -dict=fuzz/jsonl_import.dict" ;;
  ops) echo "-max_len=512 -timeout=30" ;;
  *) echo "-timeout=10" ;;
  esac
}

for t in "$@"; do
  bin=$FZ/$t
  log=$FZ/$t.log
  mkdir -p "$FZ/corpus/$t"
  echo "== fuzz $t: $FUZZ_TIME s"
  # shellcheck disable=SC2046
  "$bin" -max_total_time="$FUZZ_TIME" -print_final_stats=1 \
    -artifact_prefix="$FZ/artifacts/$t-" $(options "$t") \
    "$FZ/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  units=$(ls "$FZ/corpus/$t" | wc -l | tr -d ' ')
  if [ "$rc" -eq 0 ]; then
    ok=$((ok + 1))
    echo "fuzz $t: ok, ${execs:-?} executions (${rate:-?}/s), corpus $units inputs"
  else
    bad=$((bad + 1))
    grep -E '^(==[0-9]+==|SUMMARY|[a-z_]+: .*(check failed|differs|does not)|.*ERROR:|artifact_prefix|Test unit written)' "$log" | head -n 20
    tail -n 30 "$log"
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; log $log"
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    [ -n "$art" ] && echo "fuzz $t: reproduce with: $bin $art"
  fi
done

echo "$ok successes / $bad failures / 0 errors / 0 pending : $(($(date +%s) - start)) seconds"
[ "$bad" -eq 0 ]
