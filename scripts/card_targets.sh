# Sourced by the plugins' scripts/card_numbers.sh: runs the targets named on the command line
# (each defined by the caller's `target NAME` function, listed in $TARGETS), after checking
# every name, and records when each ran and the machine's load then (timings depend on it)
# in $R/when_TARGET.txt.

stamp() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg) cpus $(getconf _NPROCESSORS_ONLN)"; }

# The callers' fallback arm, `*) unknown_target "$1" ;;`: "help" or a name not in $TARGETS.
unknown_target() {
  [ "$1" = help ] || echo "unknown target: $1" >&2
  echo "usage: bash $0 TARGET [TARGET ...]; targets: $TARGETS" >&2
  exit 2
}

run_targets() {
  if [ $# -eq 0 ]; then target help; fi
  for t in "$@"; do # check every name before running anything
    case " $TARGETS " in *" $t "*) ;; *) target "$t" ;; esac
  done
  # (a target's own loop may reuse any short variable name: bash variables are not local to a function)
  for _card_target in "$@"; do
    echo "start $(stamp)" > "$R/when_$_card_target.txt"
    target "$_card_target"
    echo "end   $(stamp)" >> "$R/when_$_card_target.txt"
  done
}
