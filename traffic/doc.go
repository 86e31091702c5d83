// Package traffic takes hosts out of a load balancer and puts them back.
// It owns the HAProxy runtime API client (Runtime): reading a backend's
// servers, draining, maint, ready, weights, and restoring a server exactly
// as it was saved. Every API command travels over SSH to the load balancer
// host and through socat to HAProxy's admin socket there; the command goes
// on socat's stdin, never into the shell line. Nothing here knows about
// releases or plans: the deploy engine decides when traffic moves.
package traffic
