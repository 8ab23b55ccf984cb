package mq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"
)

// roleImpostor serves a socket at MQ_TEST_SOCKET that accepts connections
// and never answers, as a container that took the broker's place would.
func roleImpostor(ctx context.Context) error {
	ln, err := net.Listen("unix", os.Getenv(envSocket))
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("READY")
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		defer c.Close()
	}
}

// startImpostor runs roleImpostor as uid nobody (the test must run as root).
func startImpostor(t *testing.T, socket string) {
	t.Helper()
	p := testkit.Child(t, "impostor", testkit.AsUser(65534), testkit.Env(envSocket+"="+socket))
	p.ExpectLine(t, 30*time.Second, "READY")
}

// A broker socket served by a process of another user than the sidecar's
// is refused by the client (it would hand the impostor its messages), and
// a broker starting over it takes its place instead of refusing to start.
func TestImpostorSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the impostor under another UID: needs root")
	}
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o777); err != nil { // as an emptyDir is
		t.Fatal(err)
	}
	socket := podcontract.MQSocketPath(dir)
	startImpostor(t, socket)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, WithSocketPath(socket), WithBrokerUID(os.Getuid()))
	if !errors.Is(err, ErrImpostor) {
		t.Fatalf("Dial to the impostor: %v, want ErrImpostor", err)
	}
	t.Setenv(podcontract.EnvBrokerUID, "0")
	if _, err := Dial(ctx, WithSocketPath(socket)); !errors.Is(err, ErrImpostor) {
		t.Fatalf("Dial to the impostor with %s set: %v, want ErrImpostor", podcontract.EnvBrokerUID, err)
	}

	// The sidecar's broker takes the socket back; clients reach it.
	b := startBrokerIn(t, dir, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c, err := Dial(ctx, WithSocketPath(b.socket))
	if err != nil {
		t.Fatalf("Dial to the broker that took the socket back: %v", err)
	}
	defer c.Close()
	mustSend(t, c, "q", "safe")
}

// A broker's own UID passes the check; a file in the socket's place is
// removed by Listen; a live broker of the same user is not taken over.
func TestBrokerUIDCheckAndListen(t *testing.T) {
	dir := shortTempDir(t)
	socket := podcontract.MQSocketPath(dir)
	if err := os.WriteFile(socket, []byte("in the way"), 0o666); err != nil {
		t.Fatal(err)
	}
	b := startBrokerIn(t, dir, mqbroker.Options{}, mqbroker.QueueConfig{Name: "q"})
	c, err := Dial(testCtx(t), WithSocketPath(socket), WithBrokerUID(os.Getuid()))
	if err != nil {
		t.Fatalf("Dial with the broker's own UID: %v", err)
	}
	c.Close()
	if _, err := Dial(testCtx(t), WithSocketPath(socket), WithBrokerUID(os.Getuid()+1)); !errors.Is(err, ErrImpostor) {
		t.Fatalf("Dial expecting another UID: %v, want ErrImpostor", err)
	}
	if ln, err := mqbroker.Listen(b.socket, 0); err == nil {
		ln.Close()
		t.Fatal("Listen took over a live broker of the same user")
	}
	t.Setenv(podcontract.EnvBrokerUID, "not-a-uid")
	if _, err := Dial(testCtx(t), WithSocketPath(socket)); err == nil {
		t.Fatal("Dial with a malformed broker UID in the environment succeeded")
	}
}

// roleHog opens up to MQ_TEST_COUNT connections to the broker at
// MQ_TEST_SOCKET (served by root), prints how many it got and how many were
// refused with "too many connections", and holds them until told to stop.
func roleHog(ctx context.Context) error {
	held, refused := 0, 0
	for range envInt(envCount) {
		c, err := Dial(ctx, WithSocketPath(os.Getenv(envSocket)), WithBrokerUID(0))
		switch {
		case err == nil:
			defer c.Close()
			held++
		case errors.Is(err, ErrTooManyConnections):
			refused++
		default:
			return err
		}
	}
	fmt.Printf("HELD %d REFUSED %d\n", held, refused)
	<-ctx.Done()
	return nil
}

// One container (one UID) that opens connections without end gets its
// share, is refused the rest with "too many connections", and leaves the
// others theirs.
func TestConnectionLimitPerUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the hog under another UID: needs root")
	}
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o777); err != nil { // as an emptyDir is
		t.Fatal(err)
	}
	b := startBrokerIn(t, dir, mqbroker.Options{MaxConnections: 8, MaxConnectionsPerUID: 3}, mqbroker.QueueConfig{Name: "q"})
	p := testkit.Child(t, "hog", testkit.AsUser(65534), testkit.Env(envSocket+"="+b.socket, envCount+"=6"))
	p.ExpectLine(t, 30*time.Second, "HELD 3 REFUSED 3")

	var mine []*Client
	for range 3 {
		mine = append(mine, dial(t, b.socket))
	}
	mustSend(t, mine[0], "q", "the hog did not starve us")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, WithSocketPath(b.socket), WithBrokerUID(0)); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("a fourth connection of uid 0: %v, want ErrTooManyConnections", err)
	}
	cs := b.ConnStats()
	if cs.ByUID[65534] != 3 || cs.ByUID[0] != 3 || cs.MaxConnectionsPerUID != 3 || cs.Connections < 6 {
		t.Fatalf("ConnStats %+v", cs)
	}
	mine[2].Close()
	testkit.EventuallyTrue(t, 5*time.Second, "the closed connection to be released", func() bool { return b.ConnStats().ByUID[0] == 2 })
	dial(t, b.socket) // the released connection left room for another
}
