package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/relctl/relctl/playbooks"
)

// maxRedirects bounds the redirects a webhook may answer with (each to
// its own host only).
const maxRedirects = 3

// bodyShown is how much of a refusing webhook's answer an error shows.
const bodyShown = 200

// webhookBody is what is POSTed: Slack's incoming-webhook shape (text)
// plus the structured event under "relctl", which Slack ignores.
type webhookBody struct {
	Text   string `json:"text"`
	Relctl Event  `json:"relctl"`
}

// newClient is the webhooks' HTTP client: proxies from the environment
// (not for loopback), redirects only to the same scheme and host and only
// when the POST stays a POST.
func newClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			first := via[0].URL
			status := 0
			if req.Response != nil {
				status = req.Response.StatusCode
			}
			switch {
			case req.URL.Scheme != first.Scheme || req.URL.Host != first.Host:
				// The target is the server's word, not the secret URL: its host may be shown.
				return fmt.Errorf("HTTP %d redirect to another host (%s), not followed", status, req.URL.Host)
			case req.Method != http.MethodPost:
				return fmt.Errorf("HTTP %d redirect would turn the POST into a %s, not followed", status, req.Method)
			case len(via) > maxRedirects:
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			return nil
		},
	}
}

// post sends ev to the entry's webhook. Its errors never hold the URL: the
// URL is a secret, and the net/http errors that would name it are unwrapped.
func (n *Notifier) post(ctx context.Context, c *playbooks.NotifyConfig, ev Event) error {
	target, err := c.WebhookURL(func(name string) (string, error) {
		if n.opts.Secret == nil {
			return "", fmt.Errorf("secret %q: no secrets available", name)
		}
		return n.opts.Secret(ctx, name)
	})
	if err != nil {
		return err
	}
	body, err := json.Marshal(webhookBody{Text: ev.Summary, Relctl: ev})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errors.New("the webhook is not a valid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.opts.UserAgent)
	resp, err := n.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // "Post "<the secret URL>": ..." without the URL
		}
		// The host is part of the secret too (a dial error names it).
		msg := strings.ReplaceAll(err.Error(), req.URL.Host, playbooks.SecretMask)
		msg = strings.ReplaceAll(msg, req.URL.Hostname(), playbooks.SecretMask)
		return &masked{msg: "POST: " + msg, err: err}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, bodyShown))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if text := OneLine(string(head), bodyShown); text != "" {
			msg += ": " + text
		}
		return errors.New(msg)
	}
	return nil
}
