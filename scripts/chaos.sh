#!/usr/bin/env bash
# Runs the hostile-host matrix (TestChaosMatrix in cmd/relctl): every testenv
# fault mode (truncated, dropped-line, garbage and never-ending output, an
# unreadable history.json) switched on as a host enters each phase of a deploy
# (preflight, stage, activate, verify, cutover, post) or the automatic
# rollback, against local clusters of SSH hosts. It prints the table of
# outcomes: every cell must exit 3 or 4 naming the host, without a panic, a
# lock left on any host, or an activation lost from any host's history.
# Exit status: the test's (non-zero when a cell fails).
# RELCTL_CHAOS_WORKERS=N runs N cells at once (default 3); RACE=1 adds -race.
set -uo pipefail
cd "$(dirname "$0")/.."
go="${GO:-go}"
table="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$table" "$log"' EXIT

flags=(-count=1 -timeout 15m -run '^TestChaosMatrix$')
if [ "${RACE:-0}" = 1 ]; then
	flags+=(-race)
fi
echo "== TestChaosMatrix: 5 faults x 7 phases, against local testenv clusters" >&2
RELCTL_CHAOS_TABLE="$table" "$go" test "${flags[@]}" -v ./cmd/relctl/ >"$log" 2>&1
status=$?
if [ -s "$table" ]; then
	cat "$table"
else
	# No table: the test did not get that far (a build error, a cluster that
	# would not start).
	tail -n 40 "$log" >&2
fi
if [ "$status" -ne 0 ]; then
	echo >&2
	echo "failing cells, with the end of relctl's stderr:" >&2
	grep -a -E -A14 '^\s+chaos_test.go:[0-9]+: [a-z-]+/[a-z]+ \(' "$log" >&2 || tail -n 40 "$log" >&2
fi
exit "$status"
