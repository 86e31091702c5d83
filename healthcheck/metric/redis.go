package metric

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// quietRedis silences go-redis's package logger once: it prints pool
// errors ("failed to dial after 1 attempts") to stderr, in the middle of
// relctl's progress view. Every such error is also returned, and reported.
var quietRedis sync.Once

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// readRedis reads a key's length or an INFO field over a fresh connection
// (one per sample, like the http check: a restarted server is really
// re-read), with no retries: the soak's interval is the retry.
func readRedis(r reader, s Spec) Sample {
	quietRedis.Do(func() { redis.SetLogger(discardRedisLog{}) })
	client := redis.NewClient(&redis.Options{
		Addr:                  s.Address,
		Dialer:                r.dial,
		Username:              s.Username,
		Password:              r.password,
		DB:                    s.DB,
		Protocol:              2, // RESP2: what every server speaks; no push notifications to manage
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           r.timeout,
		ReadTimeout:           r.timeout,
		WriteTimeout:          r.timeout,
		ContextTimeoutEnabled: true,
		// One connection is all a sample uses; 2 because go-redis starts a
		// background re-dialler (through the host's SSH connection, after
		// the sample) once failed dials reach the pool size.
		PoolSize:        2,
		DisableIdentity: true, // no CLIENT SETINFO: nothing but the read itself
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	defer client.Close()

	if s.Key != "" {
		var cmd *redis.IntCmd
		switch s.Command {
		case RedisLLEN:
			cmd = client.LLen(r.ctx, s.Key)
		case RedisXLEN:
			cmd = client.XLen(r.ctx, s.Key)
		default: // RedisZCARD; Validate refused anything else
			cmd = client.ZCard(r.ctx, s.Key)
		}
		n, err := cmd.Result()
		if err != nil {
			return Sample{Err: r.redisError(err)}
		}
		return Sample{Value: float64(n)}
	}
	info, err := client.Info(r.ctx).Result()
	if err != nil {
		return Sample{Err: r.redisError(err)}
	}
	v, detail, err := fieldValue(parseInfo(info), s.Field, "INFO")
	if err != nil {
		return Sample{Err: err}
	}
	return Sample{Value: v, Detail: detail}
}

// redisError classifies a go-redis error: the server's refusals of the
// credentials are ErrAuth, its other error replies (WRONGTYPE, LOADING,
// NOPERM…) ErrProtocol, with the server's words; the rest as any reading.
func (r reader) redisError(err error) error {
	if r.parent.Err() != nil {
		return r.parent.Err()
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return r.classify(err)
	}
	msg := r.scrub(rerr.Error())
	upper := strings.ToUpper(msg)
	for _, auth := range []string{"WRONGPASS", "NOAUTH", "INVALID PASSWORD", "INVALID USERNAME", "ERR AUTH", "NOPERM"} {
		if strings.Contains(upper, auth) {
			// The cause is dropped: only the scrubbed words travel on.
			return failf(ErrAuth, "authentication failed: "+msg)
		}
	}
	if strings.HasPrefix(upper, "WRONGTYPE") {
		msg += " (the key is not what command reads: llen for a list, xlen for a stream, zcard for a sorted set)"
	}
	return &readError{kind: ErrProtocol, msg: "redis refused: " + msg, cause: err}
}

// parseInfo reads INFO's "name:value" lines; sections ("# Memory") and
// blank lines are skipped.
func parseInfo(info string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, value, ok := strings.Cut(line, ":"); ok {
			fields[name] = value
		}
	}
	return fields
}
