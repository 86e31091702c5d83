// Package watchdog checks watchdog configuration (monit; systemd units) before
// traffic moves: it parses a monit control snippet with positions, validates it
// with the real `monit -t`, and checks what monit -t does not.
package watchdog
