package playbooks

import "testing"

func TestExampleLoads(t *testing.T) {
	p, err := Load("examples/relctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	_ = p
}
