package transport

import (
	"context"
	"time"
)

// bastionName is the name a bastion goes by in errors, logs and
// Handshakes: "bastion user@host:port", and for the second of a chain
// "bastion first>second". Two logins to one bastion with different
// settings (identity, known_hosts, ...) are two connections of one name.
func bastionName(chain string) string { return "bastion " + chain }

// bastion returns the connection to the last bastion of chain, dialling
// the chain's bastions that are not connected (each through the one
// before it). A bastion is dialled once for all the hosts behind it that
// reach it the same way (the same logins along the chain).
func (p *Pool) bastion(ctx context.Context, forHost string, chain []hop) (*sshConn, error) {
	var via *sshConn
	for _, h := range chain {
		h.via, h.logFor = via, forHost
		c, err := p.getHop(ctx, h)
		if err != nil {
			return nil, err
		}
		via = c
	}
	return via, nil
}

// viaGrace is how long a connection through a bastion that ended waits to
// learn whether the bastion's connection ended too (the usual cause).
const viaGrace = 200 * time.Millisecond
