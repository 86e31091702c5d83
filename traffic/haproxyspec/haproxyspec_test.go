package haproxyspec

import "testing"

func TestName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "web-1.example:8080": true, "be_1": true,
		"": false, "web pool": false, "web/1": false, "a;shutdown sessions server web/x": false,
		"web\n": false, "wéb": false, "$(id)": false,
	} {
		if err := Name("server", name); (err == nil) != ok {
			t.Errorf("Name(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	if err := Name("backend", "web pool"); err == nil || err.Error() != `backend name "web pool": HAProxy names are letters, digits, '-', '_', '.' and ':'` {
		t.Errorf("message: %v", err)
	}
}

func TestSocket(t *testing.T) {
	for path, ok := range map[string]bool{
		"/run/haproxy/admin.sock": true, "/var/lib/haproxy/stats@1": true, "/": true,
		"": false, "run/haproxy.sock": false, "/run/haproxy.sock,reuseaddr": false, "/run/a b.sock": false,
		"/run/x:y": false, "/run/x!y": false, "/run/'x'": false, "~/admin.sock": false,
	} {
		if err := Socket(path); (err == nil) != ok {
			t.Errorf("Socket(%q) = %v, want ok=%v", path, err, ok)
		}
	}
	if err := Socket("s"); err == nil || err.Error() != `haproxy admin socket "s": want an absolute path of letters, digits and /_.@%+=~-` {
		t.Errorf("message: %v", err)
	}
}
