package sshconfig

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseProxyJump(t *testing.T) {
	tests := []struct {
		in   string
		want []Jump
		err  string // a part of the error; "" for none
	}{
		{in: "", want: nil},
		{in: "none", want: nil},
		{in: "None", want: nil},
		{in: "  ", want: nil},
		{in: "bastion", want: []Jump{{Host: "bastion"}}},
		{in: "bastion:22", want: []Jump{{Host: "bastion", Port: 22}}},
		{in: "ops@bastion:2222", want: []Jump{{User: "ops", Host: "bastion", Port: 2222}}},
		{in: "ssh://ops@bastion:2222", want: []Jump{{User: "ops", Host: "bastion", Port: 2222}}},
		{in: "ssh://bastion", want: []Jump{{Host: "bastion"}}},
		{in: "a@b@bastion", want: []Jump{{User: "a@b", Host: "bastion"}}},
		{in: "[::1]:22", want: []Jump{{Host: "::1", Port: 22}}},
		{in: "root@[::1]:2200", want: []Jump{{User: "root", Host: "::1", Port: 2200}}},
		{in: "[fe80::1]", want: []Jump{{Host: "fe80::1"}}},
		{in: "::1", want: []Jump{{Host: "::1"}}},
		{in: "10.0.0.1:22", want: []Jump{{Host: "10.0.0.1", Port: 22}}},
		{in: "a@first:22, b@second:2022,third", want: []Jump{
			{User: "a", Host: "first", Port: 22}, {User: "b", Host: "second", Port: 2022}, {Host: "third"}}},
		{in: "host\n", want: []Jump{{Host: "host"}}}, // surrounding blanks are trimmed
		{in: "a,", err: "bastion 2: empty"},
		{in: ",a", err: "bastion 1: empty"},
		{in: "@host", err: "empty user"},
		{in: "-oops@host", err: "starts with '-'"},
		{in: "u;rm@host", err: "shell metacharacter"},
		{in: "ssh://ssh://u@host", err: "holds a '/'"},
		{in: "user@", err: "no host"},
		{in: "host:", err: `port "" is not a number`},
		{in: "host:0", err: `port "0"`},
		{in: "host:65536", err: `port "65536"`},
		{in: "host:22x", err: `port "22x"`},
		{in: "host:+22", err: `port "+22"`},
		{in: "host:022", err: `port "022"`},
		{in: "[::1", err: "missing ]"},
		{in: "[::1]22", err: "unexpected"},
		{in: "[bastion]:22", err: "not an IPv6 address"},
		{in: "::1:22:x", err: "[addr]:port"},
		{in: "ho st", err: "blank or control"},
		{in: "a@h\x01", err: "blank or control"},
		{in: "a/b:22", err: "bad host name"},
		{in: "ssh://host/path", err: "bad host name"},
		{in: "-oProxyCommand=x", err: "taken for an option"},
		{in: "-J:22", err: "taken for an option"},
		{in: "a[b", err: "bad host name"},
		{in: "a]b", err: "bad host name"},
		{in: "$(reboot)", err: "bad host name"},
		{in: "h`x`", err: "bad host name"},
		{in: "h;x", err: "bad host name"},
		{in: "h|x", err: "bad host name"},
		{in: "h*", err: "bad host name"},
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
			t.Errorf("ParseProxyJump(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestJumpString(t *testing.T) {
	for _, tt := range []struct {
		j    Jump
		want string
	}{
		{Jump{Host: "bastion"}, "bastion"},
		{Jump{Host: "bastion", Port: 2222}, "bastion:2222"},
		{Jump{User: "ops", Host: "bastion"}, "ops@bastion"},
		{Jump{User: "ops", Host: "::1", Port: 2200}, "ops@[::1]:2200"},
		{Jump{Host: "fe80::1"}, "[fe80::1]"},
	} {
		if got := tt.j.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.j, got, tt.want)
		}
	}

	// A chain's String parses back to itself.
	chain, err := ParseProxyJump("ops@[::1]:2200,bastion,ssh://u@h:22,::2")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, j := range chain {
		s = append(s, j.String())
	}
	if got := strings.Join(s, ","); got != "ops@[::1]:2200,bastion,u@h:22,[::2]" {
		t.Errorf("String: %s", got)
	}
	again, err := ParseProxyJump(strings.Join(s, ","))
	if err != nil || !reflect.DeepEqual(again, chain) {
		t.Errorf("round trip: %v, %v", again, err)
	}
}
