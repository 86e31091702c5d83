package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdReceiver is `receiver NAME STATUS`: a webhook receiver for [[notify]],
// a real HTTP server on 127.0.0.1 until the script ends, answering every
// request with STATUS. Request N (from 1) is written to
// $WORK/received/NAME/N.json (the body) and N.meta (method, path,
// Content-Type, User-Agent); $NAME_URL (NAME upper-cased) is its URL.
func cmdReceiver(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: receiver NAME STATUS")
	}
	name := args[0]
	status, err := strconv.Atoi(args[1])
	ts.Check(err)
	dir := filepath.Join(ts.Getenv("WORK"), "received", name)
	ts.Check(os.MkdirAll(dir, 0o755))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	var mu sync.Mutex
	n := 0
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		base := filepath.Join(dir, strconv.Itoa(n))
		meta := fmt.Sprintf("%s %s\nContent-Type: %s\nUser-Agent: %s\n", r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"))
		werr := errors.Join(os.WriteFile(base+".json", body, 0o644), os.WriteFile(base+".meta", []byte(meta), 0o644))
		mu.Unlock()
		if werr != nil {
			http.Error(w, werr.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(status)
		if status >= 300 {
			fmt.Fprintf(w, "receiver %s answers %d on purpose\n", name, status)
		}
	})}
	go srv.Serve(ln)
	ts.Defer(func() { srv.Close() })
	ts.Setenv(strings.ToUpper(name)+"_URL", "http://"+ln.Addr().String())
}
