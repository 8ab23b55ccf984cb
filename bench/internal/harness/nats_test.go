package harness

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// setupNATS starts a nats-server for a link, or skips the test when the
// binary is not installed (the bench reports NATS as n/a then).
func setupNATS(t *testing.T, spec LinkSpec) *natsLink {
	t.Helper()
	link, err := natsTransport{}.Setup(spec)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("NATS unavailable here: %v", err)
	}
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	l := link.(*natsLink)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestNATSMissingServer: without the server binary the transport is
// unavailable, with the reason, rather than failing.
func TestNATSMissingServer(t *testing.T) {
	_, err := natsTransport{server: "/nonexistent/nats-server"}.Setup(testSpec(t, 64))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Setup with no server binary = %v, want ErrUnavailable", err)
	}
}

// TestNATSTooLarge: messages beyond what any NATS server accepts are n/a.
func TestNATSTooLarge(t *testing.T) {
	_, err := natsTransport{}.Setup(LinkSpec{Size: natsMaxPayload + 1, Dir: t.TempDir()})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Setup of %d-byte messages = %v, want ErrUnavailable", natsMaxPayload+1, err)
	}
}

// TestNATSLinkLifecycle: Setup starts a server on a loopback port that both
// sides reach; Close stops it and removes its directory.
func TestNATSLinkLifecycle(t *testing.T) {
	l := setupNATS(t, testSpec(t, 64))
	b, err := natsTransport{}.Attach(LinkSpec{Size: 64}, l.Handoff())
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer b.Close()
	a, err := l.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := newMessage(64)
	stamp(msg, 7, 0)
	if err := a.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	got, err := b.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStamps(got, 7, 64); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-l.server.exited:
	default:
		t.Fatal("nats-server still running after Close")
	}
	if _, err := os.Stat(l.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("server directory left behind: %v", err)
	}
}

// TestNATSStreamIsPlainPublish: in a throughput job side A publishes
// without a reply subject (core publish/subscribe), in an rtt job it sends
// requests that side B can answer.
func TestNATSStreamIsPlainPublish(t *testing.T) {
	for _, kind := range []Kind{KindThroughput, KindRTT} {
		t.Run(string(kind), func(t *testing.T) {
			spec := testSpec(t, 64)
			spec.Kind = kind
			a, b := attachInProcess(t, natsTransport{}, spec)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			msg := newMessage(64)
			stamp(msg, 0, 0)
			if err := a.Send(ctx, msg); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Recv(ctx); err != nil {
				t.Fatal(err)
			}
			reply := b.(*natsConn).last.Reply
			if (reply == "") != (kind == KindThroughput) {
				t.Fatalf("%s job: reply subject %q", kind, reply)
			}
		})
	}
}
