#!/usr/bin/env bash
# Runs every native Go fuzz target in the repository for FUZZTIME each
# (default 30s), one after the other, and prints a table of what each found.
# A target that finds a crasher leaves it in <pkg>/testdata/fuzz/<Target>/,
# where `make test` then runs it as an ordinary test case: commit it with the fix.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-30s}"
go="${GO:-go}"

targets=()
for pkg in $("$go" list ./...); do
	for t in $("$go" test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz'); do
		targets+=("$pkg $t")
	done
done
if [ "${#targets[@]}" -eq 0 ]; then
	echo "no fuzz targets found" >&2
	exit 1
fi

results=()
failed=0
for entry in "${targets[@]}"; do
	pkg="${entry% *}"
	t="${entry#* }"
	echo "== $t ($pkg), $fuzztime" >&2
	log="$(mktemp)"
	if "$go" test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" -fuzzminimizetime "${FUZZMINIMIZETIME:-10s}" "$pkg" >"$log" 2>&1; then
		execs="$(grep -o 'execs: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)"
		results+=("$(printf '%-40s %-45s %-8s %s' "$t" "${pkg#github.com/relctl/relctl/}" ok "${execs:-?} execs")")
	else
		failed=$((failed + 1))
		crasher="$(grep -o 'testdata/fuzz/[^ ]*' "$log" | head -n1)"
		results+=("$(printf '%-40s %-45s %-8s %s' "$t" "${pkg#github.com/relctl/relctl/}" FAILED "${crasher:-see log}")")
		tail -n 30 "$log" >&2
	fi
	rm -f "$log"
done

printf '%-40s %-45s %-8s %s\n' TARGET PACKAGE RESULT DETAIL
printf '%s\n' "${results[@]}"
echo "${#targets[@]} targets, $failed failed"
[ "$failed" -eq 0 ]
