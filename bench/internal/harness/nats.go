package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// natsTransport is a NATS server (Debian's nats-server) on a free loopback
// port, started for each job and stopped after it, with the nats.go client
// on both sides: core NATS, no JetStream, so no acks and no persistence.
// Round trips are request/reply: side A publishes each request with its
// reply subject (an inbox it subscribed to once) and side B answers with
// Msg.Respond. Throughput is plain publish/subscribe: A publishes and
// flushes after the last message, B's subscription counts.
type natsTransport struct {
	// server is the nats-server binary; empty looks it up (natsServerPath).
	server string
}

// nameNATS is the NATS backend's name, a verdict baseline.
const nameNATS = "nats"

const (
	// paramNATSURL is the handoff parameter carrying the server's URL.
	paramNATSURL = "nats-url"
	// The subjects: side B subscribes to natsSubject, side A to
	// natsReplySubject, the inbox of its requests.
	natsSubject      = "podipc.bench.a-to-b"
	natsReplySubject = "podipc.bench.b-to-a"
	// natsMaxPayload is the largest payload nats-server accepts at all.
	natsMaxPayload = 64 << 20
	// natsDefaultMaxPayload is nats-server's default payload limit.
	natsDefaultMaxPayload = 1 << 20
)

// natsServerPath finds the nats-server binary: configured, or in PATH, or
// where Debian's package installs it (/usr/sbin, which a non-root PATH may
// lack).
func natsServerPath(configured string) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("%w: nats-server: %v", ErrUnavailable, err)
		}
		return configured, nil
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nats-server"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", fmt.Errorf("%w: nats-server is not installed (Debian: apt-get install nats-server; make bench installs it when run as root)", ErrUnavailable)
}

func (t natsTransport) Setup(spec LinkSpec) (Link, error) {
	if spec.Size > natsMaxPayload {
		return nil, fmt.Errorf("%w: %s exceeds NATS's largest max_payload (%s)", ErrUnavailable, FormatSize(spec.Size), FormatSize(natsMaxPayload))
	}
	bin, err := natsServerPath(t.server)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "podipc-bench-nats-")
	if err != nil {
		return nil, fmt.Errorf("nats-server directory: %w", err)
	}
	conf := filepath.Join(dir, "nats.conf")
	// Port -1: the kernel picks a free one; the server writes it to its
	// ports file.
	text := fmt.Sprintf("listen: \"127.0.0.1:-1\"\nmax_payload: %d\n", max(spec.Size, natsDefaultMaxPayload))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("nats-server config: %w", err), os.RemoveAll(dir))
	}
	srv, err := startChild("nats-server", exec.Command(bin, "-c", conf, "--ports_file_dir", dir))
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	l := &natsLink{dir: dir, server: srv, request: spec.Kind != KindThroughput}
	if l.url, err = l.awaitPort(); err != nil {
		return nil, errors.Join(srv.explain(err), l.Close())
	}
	return l, nil
}

func (natsTransport) Attach(spec LinkSpec, h Handoff) (Conn, error) {
	nc, err := connectNATS(h.Params[paramNATSURL], "podipc-bench-b")
	if err != nil {
		return nil, err
	}
	sub, err := subscribeNATS(nc, natsSubject)
	if err != nil {
		return nil, err
	}
	return &natsConn{nc: nc, sub: sub, respond: true}, nil
}

// natsLink is a running nats-server.
type natsLink struct {
	dir     string
	url     string
	server  *child
	request bool // side A sends requests (rtt) rather than plain publishes
}

// natsPorts is the server's ports file.
type natsPorts struct {
	Nats []string `json:"nats"`
}

// awaitPort waits for the server's ports file and returns its client URL.
func (l *natsLink) awaitPort() (string, error) {
	path := filepath.Join(l.dir, fmt.Sprintf("nats-server_%d.ports", l.server.cmd.Process.Pid))
	deadline := time.Now().Add(childStartTimeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var p natsPorts
			if err := json.Unmarshal(b, &p); err == nil && len(p.Nats) > 0 {
				return p.Nats[0], nil
			}
		}
		select {
		case <-l.server.exited:
			return "", errors.New("nats-server exited before it was ready")
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("nats-server wrote no ports file within %v", childStartTimeout)
		}
	}
}

func (l *natsLink) Handoff() Handoff {
	return Handoff{Params: map[string]string{paramNATSURL: l.url}}
}

func (l *natsLink) Open() (Conn, error) {
	nc, err := connectNATS(l.url, "podipc-bench-a")
	if err != nil {
		return nil, l.server.explain(err)
	}
	sub, err := subscribeNATS(nc, natsReplySubject)
	if err != nil {
		return nil, err
	}
	return &natsConn{nc: nc, sub: sub, request: l.request}, nil
}

func (l *natsLink) Close() error {
	_ = l.server.cmd.Process.Signal(syscall.SIGTERM)
	return errors.Join(l.server.stop(), os.RemoveAll(l.dir))
}

// connectNATS connects without reconnecting: a lost server fails the job.
func connectNATS(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.NoReconnect(), nats.Timeout(childStartTimeout))
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	return nc, nil
}

// subscribeNATS subscribes to subject and waits until the server has
// registered the subscription, so that nothing published afterwards is
// missed.
func subscribeNATS(nc *nats.Conn, subject string) (*nats.Subscription, error) {
	sub, err := nc.SubscribeSync(subject)
	if err == nil {
		err = nc.FlushTimeout(childStartTimeout)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats subscribe %s: %w", subject, err)
	}
	return sub, nil
}

// natsConn is one side's connection. Side A publishes to natsSubject (as
// requests with natsReplySubject for their replies, or plain messages) and
// receives on natsReplySubject. Side B (respond) receives on natsSubject
// and sends by answering the last message it received.
type natsConn struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	request bool
	respond bool
	last    *nats.Msg
}

func (c *natsConn) Send(ctx context.Context, msg []byte) error {
	var err error
	switch {
	case c.respond:
		if c.last == nil {
			return errors.New("nats: nothing to answer")
		}
		err = c.last.Respond(msg)
	case c.request:
		err = c.nc.PublishRequest(natsSubject, natsReplySubject, msg)
	default:
		err = c.nc.Publish(natsSubject, msg)
	}
	if err != nil {
		return fmt.Errorf("nats publish: %w", err)
	}
	if flags(msg)&flagLast != 0 {
		if err := c.nc.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("nats flush: %w", err)
		}
	}
	return nil
}

func (c *natsConn) Recv(ctx context.Context) ([]byte, error) {
	m, err := c.sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("nats receive: %w", err)
	}
	c.last = m
	return m.Data, nil
}

func (c *natsConn) Release() error { return nil }

func (c *natsConn) Close() error {
	c.nc.Close()
	return nil
}

// allocates marks the client library as allocating per message.
func (natsTransport) allocates() {}
