// Package testenv owns relctl's local test world: a cluster of SSH hosts on
// 127.0.0.1 (x/crypto/ssh servers that run real commands in per-host
// directories), the files relctl needs to reach them (client key, known_hosts,
// relctl.toml, a playbook), the demo "search" service and its release
// artifacts, fault injection, and a daemon mode behind `relctl testenv`.
// With Options.Traffic each environment also gets a real HAProxy in front of
// its search hosts (E-lb), app hosts that call them (E-app-1, E-app-2) and
// spare hosts to move the service to (E-next-1..N).
//
// It is the world relctl deploys to, never the player: it must not import
// deploy, rollback or cmd.
package testenv
