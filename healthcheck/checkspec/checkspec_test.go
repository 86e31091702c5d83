package checkspec

import "testing"

func TestURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8080/health": true, "https://search.internal/health?x=1": true, "http://u:p@h/": true,
		"": false, "/health": false, "127.0.0.1:8080/health": false, "localhost:8080": false,
		"ftp://h/": false, "http:///x": false, "http://%zz/": false,
	} {
		if err := URL(raw); (err == nil) != ok {
			t.Errorf("URL(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
	if err := URL("ftp://u:hunter2@h/"); err == nil || err.Error() != "url must be an absolute http(s) URL" {
		t.Errorf("URL message: %v (it must not echo the URL)", err)
	}
}

func TestAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8983": true, "[::1]:22": true, "search:80": true,
		"": false, "127.0.0.1": false, "::1:22": false, "a:b:c": false,
	} {
		if err := Address(addr); (err == nil) != ok {
			t.Errorf("Address(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
	if err := Address("127.0.0.1"); err == nil || err.Error() != "address must be host:port: address 127.0.0.1: missing port in address" {
		t.Errorf("Address message: %v", err)
	}
}
