#!/usr/bin/env bash
# make demo: a local cluster of SSH hosts; 1.1.0 rehearsed in staging (forced
# rollback, then forward) and deployed to production through the rehearsal
# gate; broken 1.2.0 refused by production, its rehearsal failing in staging;
# production rolled back from a laptop; everything torn down. Exits non-zero
# on failure.
set -euo pipefail
relctl="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
dir="$(mktemp -d "${TMPDIR:-/tmp}/relctl-demo.XXXXXX")"

if [ -t 1 ]; then bold=$(printf "\033[1m"); plain=$(printf "\033[0m"); else bold=; plain=; fi
say() { printf "\n%s==> %s%s\n" "$bold" "$*" "$plain"; }
show() { printf '$ %s\n' "$*"; "$@"; }
# expect_exit CODE CMD...: runs CMD, which must exit with CODE.
expect_exit() {
	want=$1
	shift
	printf '$ %s\n' "$*"
	set +e
	"$@"
	code=$?
	set -e
	if [ "$code" != "$want" ]; then
		echo "expected exit $want, got $code" >&2
		exit 1
	fi
	echo "(exit $code, as expected)"
}

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
	say "Deploying search 1.0.0 to $env: canary first, then batches, health-checked (a first deploy has no rollback to rehearse)"
	show "$relctl" deploy --env "$env" --release 1.0.0 --yes
done

say "Production requires a rehearsal in staging (require_rehearsal = \"staging\" in relctl.toml). 1.1.0 has not been rehearsed: refused, nothing changes"
expect_exit 6 "$relctl" deploy --env production --release 1.1.0 --yes

say "Rehearse 1.1.0 in staging: deploy it, force a failure at the end of cutover, let the automatic rollback (the one production would run) bring every host back to 1.0.0, check it, deploy 1.1.0 again"
show "$relctl" rehearse --env staging --release 1.1.0 --junit rehearsal.xml
record=$(ls .relctl/rehearsals/*.json | head -n 1)

say "The record is signed in the SSHSIG format: OpenSSH's own ssh-keygen verifies it against allowed_signers"
show ssh-keygen -Y verify -f allowed_signers -I relctl-testenv -n relctl-rehearsal -s "$record.sig" < "$record"

say "How staging (as rehearsed) and production compare: roles, OS, watchdog, current release, files the playbook names"
show "$relctl" parity --env staging --env production

say "Now production takes 1.1.0 through the gate"
show "$relctl" deploy --env production --release 1.1.0 --yes
show "$relctl" status --env production

say "Each host answers with its version"
for port in $(sed -n 's/^port = \([0-9]*\).*/\1/p' relctl.toml); do
	printf '127.0.0.1:%s/health -> %s\n' "$port" "$(python3 -c 'import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$port/health")"
done

if grep -q '^\[watchdog\]' playbooks/search.toml; then
	broken="1.2.0's monit snippet watches a pidfile the service never writes (monit -t passes): the seed outage"
else
	broken="1.2.0 starts but fails its health check"
fi
say "A broken release: $broken. Production refuses it: it was never rehearsed"
expect_exit 6 "$relctl" deploy --env production --release 1.2.0 --yes

say "Its rehearsal fails in staging, which stays on (or is rolled back to) 1.1.0; the failed record is signed and kept too"
expect_exit 3 "$relctl" rehearse --env staging --release 1.2.0

say "So production still refuses 1.2.0, now because its rehearsal failed; production is untouched on 1.1.0"
expect_exit 6 "$relctl" deploy --env production --release 1.2.0 --yes
show "$relctl" status --env production

say "On-call's laptop: only relctl.toml, the playbooks and the keys, no local state. Roll production back to its previous release"
laptop="$dir/laptop"
mkdir -p "$laptop/playbooks"
cp relctl.toml id_ed25519 known_hosts "$laptop/"
cp playbooks/search.toml "$laptop/playbooks/"
(cd "$laptop" && show "$relctl" rollback --env production --to prev --yes && show "$relctl" history --env production)

say "Every command's output is in the run logs"
ls .relctl/runs/
