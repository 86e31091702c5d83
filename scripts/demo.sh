#!/usr/bin/env bash
# make demo: a local cluster of SSH hosts, two releases pushed to staging and
# production, status shown, everything torn down. Exits non-zero on failure.
set -euo pipefail
relctl="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
dir="$(mktemp -d "${TMPDIR:-/tmp}/relctl-demo.XXXXXX")"

if [ -t 1 ]; then bold=$(printf "\033[1m"); plain=$(printf "\033[0m"); else bold=; plain=; fi
say() { printf "\n%s==> %s%s\n" "$bold" "$*" "$plain"; }
show() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
	say "Tearing the cluster down"
	"$relctl" testenv down --dir "$dir" || true
	rm -rf "$dir"
}
trap cleanup EXIT

say "Starting a local cluster: staging and production, 3 SSH hosts each, on 127.0.0.1 (each with its own monit when monit is installed)"
show "$relctl" testenv up --dir "$dir" --hosts 3
cd "$dir"

say "The configuration testenv wrote (relctl.toml and playbooks/search.toml) is valid"
show "$relctl" validate

say "relctl check: what a deploy checks before moving traffic, changing nothing (1.3.0's monit snippet is not valid monit)"
printf '$ %s\n' "$relctl check --env staging --release 1.3.0"
set +e
"$relctl" check --env staging --release 1.3.0
echo "(exit $?: nothing is deployed yet, and 1.3.0 would be refused)"
set -e

say "What a deploy of 1.0.0 to staging would do (no host is touched)"
show "$relctl" plan --env staging --release 1.0.0

for env in staging production; do
	for v in 1.0.0 1.1.0; do
		say "Deploying search $v to $env: canary first, then batches, health-checked"
		show "$relctl" deploy --env "$env" --release "$v" --yes
	done
	say "Status of $env: every host on 1.1.0, previous 1.0.0, healthy"
	show "$relctl" status --env "$env"
done

say "Each host answers with its version"
for port in $(sed -n 's/^port = \([0-9]*\).*/\1/p' relctl.toml); do
	printf '127.0.0.1:%s/health -> %s\n' "$port" "$(python3 -c 'import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$port/health")"
done

if grep -q '^\[watchdog\]' playbooks/search.toml; then
	say "A broken release: 1.2.0's monit snippet watches a pidfile the service never writes (monit -t passes). After switching the canary, relctl waits for monit to supervise it, which never happens: it restores the old snippet byte for byte and rolls back"
else
	say "A broken release: 1.2.0 starts but fails its health check. The canary catches it, and relctl rolls it back"
fi
printf '$ %s\n' "$relctl deploy --env production --release 1.2.0 --yes"
set +e
"$relctl" deploy --env production --release 1.2.0 --yes
code=$?
set -e
if [ "$code" != 3 ]; then
	echo "expected exit 3 (failed, rolled back, every host healthy), got $code" >&2
	exit 1
fi
echo "(exit $code: the deploy failed and every touched host is back on 1.1.0, healthy)"
show "$relctl" status --env production

say "On-call's laptop: only relctl.toml, the playbooks and the keys, no local state. Roll production back to its previous release"
laptop="$dir/laptop"
mkdir -p "$laptop/playbooks"
cp relctl.toml id_ed25519 known_hosts "$laptop/"
cp playbooks/search.toml "$laptop/playbooks/"
(cd "$laptop" && show "$relctl" rollback --env production --to prev --yes && show "$relctl" history --env production)

say "Every command's output is in the run logs"
ls .relctl/runs/
