package transport

import (
	"fmt"
	"io"
	"net"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// agentChannelType is the channel a server opens to reach a forwarded agent.
const agentChannelType = "auth-agent@openssh.com"

// forwardsAgent says whether the server may reach the local agent through
// this connection (Target.ForwardAgent; never a bastion's).
func (c *sshConn) forwardsAgent() bool { return c.agentSock != "" }

// requestAgent asks the host to offer the agent to sess's command
// (auth-agent-req@openssh.com). A refusal is not the command's failure,
// as in OpenSSH: it is noted once per connection in the run log, and a
// command that needs the agent fails on its own.
func (c *sshConn) requestAgent(sess *ssh.Session, label string) {
	err := agent.RequestAgentForwarding(sess)
	if err == nil || c.lost() != nil {
		return
	}
	c.mu.Lock()
	first := !c.agentRefused
	c.agentRefused = true
	c.mu.Unlock()
	if first {
		c.log.line(c.host, fmt.Sprintf("[%s] ssh: agent forwarding not set up: %v", label, err))
		c.logger.Warn().Str("host", c.host).Err(err).Msg("ssh agent forwarding refused")
	}
}

// serveAgent serves one agent channel the host opened from a fresh
// connection to the local agent, each direction closed as its sender
// closes it, until both are (or the connection ends). Its goroutines
// (this one, one copying back and one discarding channel requests) live
// only while the channel is open.
func (c *sshConn) serveAgent(nc ssh.NewChannel) {
	sock, err := net.Dial("unix", c.agentSock)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "relctl: ssh-agent: "+err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		_ = sock.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	replied := make(chan struct{})
	go func() {
		defer close(replied)
		_, _ = io.Copy(ch, sock)
		_ = ch.CloseWrite()
	}()
	_, _ = io.Copy(sock, ch)
	_ = sock.(*net.UnixConn).CloseWrite()
	select {
	case <-replied:
	case <-c.gone: // an agent that waits on: closing the socket ends the copy
	}
	_ = sock.Close()
	_ = ch.Close()
	<-replied
}
