package transport

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseProxyJump(t *testing.T) {
	tests := []struct {
		in   string
		want []JumpHost
		err  string // a part of the error; "" for none
	}{
		{in: "", want: nil},
		{in: "none", want: nil},
		{in: "bastion", want: []JumpHost{{Address: "bastion:22"}}},
		{in: "ops@bastion:2222", want: []JumpHost{{User: "ops", Address: "bastion:2222"}}},
		{in: "ssh://ops@bastion:2222", want: []JumpHost{{User: "ops", Address: "bastion:2222"}}},
		{in: "a@b@bastion", want: []JumpHost{{User: "a@b", Address: "bastion:22"}}},
		{in: "[::1]:22", want: []JumpHost{{Address: "[::1]:22"}}},
		{in: "root@[::1]:2200", want: []JumpHost{{User: "root", Address: "[::1]:2200"}}},
		{in: "[fe80::1]", want: []JumpHost{{Address: "[fe80::1]:22"}}},
		{in: "::1", want: []JumpHost{{Address: "[::1]:22"}}},
		{in: "10.0.0.1:22", want: []JumpHost{{Address: "10.0.0.1:22"}}},
		{in: "a@first:22, b@second:2022", want: []JumpHost{
			{User: "a", Address: "first:22"}, {User: "b", Address: "second:2022"}}},
		{in: "a,", err: "bastion 2: empty"},
		{in: ",a", err: "bastion 1: empty"},
		{in: "@host", err: "empty user"},
		{in: "user@", err: "no host"},
		{in: "host:", err: "port \"\" is not a number"},
		{in: "host:0", err: "port \"0\""},
		{in: "host:65536", err: "port \"65536\""},
		{in: "host:22x", err: "port \"22x\""},
		{in: "host:+22", err: "port \"+22\""},
		{in: "[::1", err: "missing ]"},
		{in: "[::1]22", err: "unexpected"},
		{in: "[bastion]:22", err: "not an IPv6 address"},
		{in: "::1:22:x", err: "[addr]:port"},
		{in: "ho st", err: "space or control"},
		{in: "host\n", want: []JumpHost{{Address: "host:22"}}}, // trailing space is trimmed
		{in: "a@h\x01", err: "space or control"},
		{in: "a/b:22", err: "bad host name"},
	}
	for _, tt := range tests {
		got, err := ParseProxyJump(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseProxyJump(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseProxyJump(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestJumpHostString(t *testing.T) {
	chain, err := ParseProxyJump("ops@[::1]:2200,bastion")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, j := range chain {
		s = append(s, j.String())
	}
	if got := strings.Join(s, ","); got != "ops@[::1]:2200,bastion:22" {
		t.Errorf("String: %s", got)
	}
	// A chain's String is parsed back to itself.
	again, err := ParseProxyJump(strings.Join(s, ","))
	if err != nil || !reflect.DeepEqual(again, chain) {
		t.Errorf("round trip: %v, %v", again, err)
	}
}
