package deploy

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// uploadAction ships the artifact into the release directory, sha256-verified
// on the host, and skips it when an intact copy is already there.
type uploadAction struct {
	Local  string
	Remote string
	SHA256 string
	Size   int64
}

// buildUploadStep stages the artifact: pushed over SSH, or, for
// artifact.url, fetched by the host itself (step_fetch.go).
func buildUploadStep(_ *playbooks.Step, p *Plan, hp *HostPlan) (Action, string, error) {
	if p.Artifact.pull != nil {
		return buildFetchStep(p, hp)
	}
	a := &uploadAction{Local: p.Artifact.Path, Remote: hp.Data.Artifact, SHA256: p.Artifact.SHA256, Size: p.Artifact.Size}
	return a, fmt.Sprintf("upload %s (%s, sha256 %s) to %s", p.Artifact.Name, humanBytes(a.Size), a.SHA256[:12], a.Remote), nil
}

func (a *uploadAction) Do(ctx context.Context, h *hostRun) (string, error) {
	res, err := h.conn.Run(ctx, "sha256sum -- "+shellquote.Quote(a.Remote)+" 2>/dev/null || true", transport.RunOptions{Label: "stage/upload:verify", Limit: transport.CommandLimit})
	if err != nil {
		return "", err
	}
	if f := strings.Fields(string(res.Stdout)); len(f) > 0 && f[0] == a.SHA256 {
		return "already present, sha256 ok", nil
	}
	file, err := os.Open(a.Local)
	if err != nil {
		return "", err
	}
	defer file.Close()
	if err := h.conn.Upload(ctx, file, a.Remote, 0o644, a.SHA256); err != nil {
		return "", err
	}
	return fmt.Sprintf("uploaded %s, sha256 ok", humanBytes(a.Size)), nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
