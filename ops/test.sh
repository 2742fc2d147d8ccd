#!/usr/bin/env bash
# Set up, build and run every test suite. Exit status is non-zero on any failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
./ops/setup.sh
./ops/build.sh
bdir=${WAGGLE_BUILD_DIR:-$top/build}
start=$(date +%s)
set +e
(cd "$bdir" && ctest --output-on-failure -V -j 2 --timeout 900) > "$bdir/ctest.log" 2>&1
rc=$?
set -e
# Criterion prints a "Synthesis:" line per suite; show them all, then the totals.
cat "$bdir/ctest.log"
passed=$(grep -Eo 'Synthesis: Tested: [0-9]+ \| Passing: [0-9]+' "$bdir/ctest.log" | awk '{s+=$NF} END {print s+0}')
failed=$(grep -Eo 'Failing: [0-9]+ \| Crashing: [0-9]+' "$bdir/ctest.log" | awk '{s+=$2+$NF} END {print s+0}')
echo "test.sh: finished in $(( $(date +%s) - start ))s"
echo "${passed} passed, ${failed} failed"
exit $rc
