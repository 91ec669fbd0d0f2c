# Sourced by the node-classification table scripts (larger_graphs.sh, planetoid_graphs.sh).
# run NAME CMD...: one command, its output in $OUT/NAME.log (first line: the command), its wall
# time appended to $OUT/times.log; skipped when $ONLY (a regular expression) is set and NAME
# does not match it.
run() {
  local name=$1
  shift
  if [[ -n ${ONLY:-} && ! $name =~ $ONLY ]]; then return 0; fi
  mkdir -p "$OUT"
  local t0=$SECONDS
  echo "$ $*" > "$OUT/$name.log"
  "$@" >> "$OUT/$name.log" 2>&1
  echo "$name $((SECONDS - t0))s" >> "$OUT/times.log"
}
