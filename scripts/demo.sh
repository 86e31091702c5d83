#!/usr/bin/env bash
# make demo: a local cluster of SSH hosts; 1.1.0 rehearsed in staging (forced
# rollback, then forward) and deployed to production through the rehearsal
# gate; broken 1.2.0 refused by production, its rehearsal failing in staging;
# production rolled back from a laptop; everything torn down. Exits non-zero
# on failure.
set -euo pipefail
relctl="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
repo="$(cd "$(dirname "$0")/.." && pwd)"
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

say "Starting a local cluster on 127.0.0.1: staging and production, each with 3 search hosts (each with its own monit when monit is installed), 3 spare hosts, a real HAProxy in front of them and 2 app servers"
show "$relctl" testenv up --dir "$dir" --hosts 3 --traffic
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

lb_port() { sed -n "/name = \"$1-lb\"/,/^lb_port/s/^lb_port = \([0-9]*\).*/\1/p" relctl.toml; }
say "Through production's load balancer, every answer comes from 1.1.0"
for _ in 1 2 3 4 5 6; do
	printf '127.0.0.1:%s/health -> %s\n' "$(lb_port production)" "$(python3 -c 'import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$(lb_port production)/health")"
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

# A timeline of a failed deploy that was rolled back: 1.2.0's when it got
# past preflight (without monit), else the failure 1.1.0's rehearsal forced.
read -r failed_run failed_release < <("$relctl" history --env staging --output json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin)["runs"] if r["command"] == "deploy" and r["result"] == "rolled-back"]
runs.sort(key=lambda r: r["release"] != "1.2.0")
print(runs[0]["run_id"], runs[0]["release"]) if runs else print()') || true
if [ -z "$failed_run" ]; then
	echo "no rolled-back deploy in staging's history" >&2
	exit 1
fi
timeline="$repo/bin/demo-timeline.html"
mkdir -p "$repo/bin"
say "The failed deploy of $failed_release in staging (run $failed_run) as a timeline: one self-contained HTML page, a row per host, a bar per step, the failure marked, the automatic rollback as its own span; hover a bar for its detail"
printf '$ %s\n' "$relctl history show $failed_run --timeline $timeline >/dev/null"
"$relctl" history show "$failed_run" --timeline "$timeline" >/dev/null
echo "Open it in a browser (it outlives the demo's cluster): file://$timeline"

say "So production still refuses 1.2.0, now because its rehearsal failed; production is untouched on 1.1.0"
expect_exit 6 "$relctl" deploy --env production --release 1.2.0 --yes
show "$relctl" status --env production

say "On-call's laptop: only relctl.toml, the playbooks and the keys, no local state. Roll production back to its previous release"
laptop="$dir/laptop"
mkdir -p "$laptop/playbooks"
cp relctl.toml id_ed25519 known_hosts "$laptop/"
cp playbooks/search.toml "$laptop/playbooks/"
(cd "$laptop" && show "$relctl" rollback --env production --to prev --yes && show "$relctl" history --env production)

app_conf=hosts/production-app-1/app/app.conf
lb_state() {
	printf 'show servers state search\n' | socat stdio "UNIX-CONNECT:hosts/production-lb/haproxy/admin.sock" |
		awk 'NR > 2 && NF > 8 { printf "  %-20s %s\n", $4, ($7 % 2 == 1 ? "maint" : ($7 >= 8 ? "drain" : "ready")) " weight " $8 }'
}
# load_start: requests through production's LB until load_stop, which fails
# the demo unless every answer was a 200.
load_start() {
	rm -f "$dir/load.stop"
	python3 - "$(lb_port production)" "$dir/load.stop" "$dir/load.out" <<'PY' &
import os, sys, time, urllib.request, urllib.error
port, stop, out = sys.argv[1:]
ok = bad = 0
while not os.path.exists(stop):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read()
        ok += 1
    except Exception:
        bad += 1
    time.sleep(0.01)
open(out, "w").write(f"{ok} {bad}\n")
PY
	load_pid=$!
}
load_stop() {
	touch "$dir/load.stop"
	wait "$load_pid"
	read -r ok bad <"$dir/load.out"
	echo "Requests through the load balancer meanwhile: $ok answered 200, $bad failed"
	[ "$bad" = 0 ]
}

say "The seed release, done right: upgrade search (1.0.0 -> 1.1.0) AND move it to new hosts, with the app servers re-pointed and restarted (playbooks/examples/solr-upgrade-and-move.toml)"
cp "$repo/playbooks/examples/solr-upgrade-and-move.toml" "$repo/playbooks/examples/app.conf.tmpl" playbooks/
echo "Production's load balancer now:"
lb_state
echo "production-app-1's config names the old hosts:"
sed 's/^/  /' "$app_conf"
show "$relctl" plan --env production --playbook solr-upgrade-and-move --release 1.1.0

say "The new hosts get 1.1.0 (canary first, health-checked) while the old ones serve; then HAProxy sends traffic to the new hosts and drains the old ones, and each app server gets its new config and is restarted, one at a time, health-checked"
load_start
show "$relctl" deploy --env production --playbook solr-upgrade-and-move --release 1.1.0 --yes
load_stop
lb_state
echo "production-app-1's config now names the new hosts:"
sed 's/^/  /' "$app_conf"

say "Before finalize, the move can be undone: the app servers' config back byte for byte (restarted one at a time, health-checked), every HAProxy server back as it was; the old hosts were never touched"
load_start
show "$relctl" rollback --env production --playbook solr-upgrade-and-move --to prev --yes
load_stop
lb_state

say "Move again, then finalize: the old hosts are retired (out of HAProxy for good, their service stopped)"
show "$relctl" deploy --env production --playbook solr-upgrade-and-move --release 1.1.0 --yes
show "$relctl" finalize --env production --playbook solr-upgrade-and-move --yes
lb_state

say "Every command's output is in the run logs"
ls .relctl/runs/
