package main

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/relctl/relctl/testenv"
)

// TestScriptsBigFleet runs the scripts about the console at scale: one
// environment (staging) of bigFleetHosts hosts, more than perHostMax, so
// the host lists fold (staging-[2-21]) and the result table has a row per
// outcome.
func TestScriptsBigFleet(t *testing.T) {
	testscript.Run(t, scriptParams("testdata/script-bigfleet", func(env *testscript.Env) error {
		return startClusterWith(env, testenv.Options{Hosts: bigFleetHosts, Envs: []string{"staging"}})
	}))
}

// bigFleetHosts is the number of hosts TestScriptsBigFleet starts: with
// the demo playbook (canary 1, then 50%) three batches, staging-1,
// staging-[2-21] and staging-[22-40].
const bigFleetHosts = 40

// TestScriptsConsole runs the scripts about the console of a large run
// without a terminal: one environment (staging) of consoleHosts hosts.
// testenv's hosts are in-process SSH servers, cheap enough for 200 on two
// cores when the playbook starts no service.
func TestScriptsConsole(t *testing.T) {
	testscript.Run(t, scriptParams("testdata/script-console", func(env *testscript.Env) error {
		return startClusterWith(env, testenv.Options{Hosts: consoleHosts, Envs: []string{"staging"}})
	}))
}

// consoleHosts is the number of hosts TestScriptsConsole starts: with the
// scripts' playbook (canary 1, then 50%) three batches, staging-1,
// staging-[2-101] and staging-[102-200].
const consoleHosts = 200
