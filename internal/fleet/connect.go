package fleet

import (
	"context"

	"github.com/relctl/relctl/internal/transport"
)

// Read connects to every host, at most limit at once (all at once when
// limit <= 0), and runs fn with its connection; it returns each host's
// result and error by index. A host whose layout is unknown (Host.Err) is
// not connected to: that is its error, since nothing on it could be found;
// a host that cannot be reached has the connector's error. The errors are
// Map's (not started, panics) otherwise.
func Read[R any](ctx context.Context, c Connector, hosts []Host, limit int, fn func(context.Context, Host, transport.Conn) (R, error)) ([]R, []error) {
	return Map(ctx, hosts, limit, HostName, func(ctx context.Context, h Host) (R, error) {
		var none R
		if h.Err != nil {
			return none, h.Err
		}
		conn, err := c.Get(ctx, h.Target)
		if err != nil {
			return none, err
		}
		return fn(ctx, h, conn)
	})
}

// Reached is a host Connect reached, with its connection.
type Reached struct {
	Host
	Conn transport.Conn
}

// Connect connects to every host as Read does and returns those it
// reached, in the order given, and why it could not reach each of the
// others, by name.
func Connect(ctx context.Context, c Connector, hosts []Host, limit int) (reached []Reached, unreachable map[string]error) {
	conns, errs := Read(ctx, c, hosts, limit, func(_ context.Context, _ Host, conn transport.Conn) (transport.Conn, error) {
		return conn, nil
	})
	unreachable = map[string]error{}
	for i, h := range hosts {
		if errs[i] != nil {
			unreachable[h.Name] = errs[i]
			continue
		}
		reached = append(reached, Reached{Host: h, Conn: conns[i]})
	}
	return reached, unreachable
}
