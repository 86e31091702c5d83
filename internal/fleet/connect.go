package fleet

import (
	"context"

	"github.com/relctl/relctl/internal/transport"
)

// Reached is a host Connect reached, with its connection.
type Reached struct {
	Host
	Conn transport.Conn
}

// Connect connects to every host, at most limit at once (all at once when
// limit <= 0), and returns those it reached, in the order given, and why it
// could not reach each of the others, by name. A host whose layout is
// unknown (Err) is not connected to: it fails with that error, since
// nothing on it could be found.
func Connect(ctx context.Context, c Connector, hosts []Host, limit int) (reached []Reached, unreachable map[string]error) {
	tries := make([]*Reached, len(hosts))
	for i, h := range hosts {
		tries[i] = &Reached{Host: h}
	}
	errs := EachErrors(ctx, tries, limit, func(r *Reached) string { return r.Name }, func(ctx context.Context, r *Reached) error {
		if r.Err != nil {
			return r.Err
		}
		var err error
		r.Conn, err = c.Get(ctx, r.Target)
		return err
	})
	unreachable = map[string]error{}
	for i, r := range tries {
		if errs[i] != nil {
			unreachable[r.Name] = errs[i]
			continue
		}
		reached = append(reached, *r)
	}
	return reached, unreachable
}
