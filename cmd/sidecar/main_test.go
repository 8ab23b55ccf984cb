package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/shm"
)

// Child roles of the re-executed test binary (internal/testkit).
const (
	// roleSidecar runs the command itself with the role's arguments.
	roleSidecar = "sidecar"
	// roleHardenedSidecar runs the command as the injector runs it: as UID
	// and GID 65532 with a read-only root file system. It must be started
	// as root in a new mount namespace.
	roleHardenedSidecar = "hardened-sidecar"
	// roleHardenProbe only checks that the hardening works here.
	roleHardenProbe = "harden-probe"
	// roleShmPeer registers a peer on CHANNEL_PATH (and, with MQ_SOCKET,
	// pings the broker), says "ready", and leaves when its stdin closes.
	roleShmPeer = "shm-peer"
)

func TestMain(m *testing.M) {
	testkit.Main(m, testkit.Roles{
		roleSidecar: func(args []string) error { return testkit.Exit(run(args, os.Stdout, os.Stderr)) },
		roleHardenedSidecar: func(args []string) error {
			if err := harden(); err != nil {
				return fmt.Errorf("harden: %w", err)
			}
			return testkit.Exit(run(args, os.Stdout, os.Stderr))
		},
		roleHardenProbe: func([]string) error { return harden() },
		roleShmPeer:     func([]string) error { return shmPeer(os.Getenv("CHANNEL_PATH")) },
	})
}

// hardenedUID is the UID and GID the injector runs the sidecar as.
const hardenedUID = 65532

// harden makes the root file system read-only in this process's mount
// namespace and drops root for hardenedUID.
func harden() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("/", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("remount / read-only: %w", err)
	}
	if err := os.WriteFile("/podipc-write-probe", nil, 0o600); err == nil {
		return errors.New("the root file system is still writable")
	}
	return testkit.DropPrivileges(hardenedUID)
}

func shmPeer(path string) error {
	ch, err := shm.Open(path)
	if err != nil {
		return err
	}
	defer ch.Close()
	var peer io.Closer
	if ch.Options().Mode == shm.ModeBroadcast {
		peer, err = ch.Subscribe()
	} else {
		peer, err = ch.NewConsumer()
	}
	if err != nil {
		return err
	}
	if sock := os.Getenv("MQ_SOCKET"); sock != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		client, err := mq.Dial(ctx, mq.WithSocketPath(sock))
		if err != nil {
			return err
		}
		defer client.Close()
		if err := client.Ping(ctx); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return peer.Close()
}

// sidecar is a running podipc-sidecar process.
type sidecar struct {
	t    testing.TB
	proc *testkit.Proc
	addr string
	dir  string
}

// startSidecar runs the command (this test binary in the sidecar role) with
// args plus --dir, --config, an ephemeral HTTP port and short intervals, and
// waits until it listens.
func startSidecar(t testing.TB, dir, config string, args ...string) *sidecar {
	t.Helper()
	args = append([]string{"--resync-interval", "50ms", "--config-poll-interval", "200ms"}, args...)
	return startSidecarProcess(t, testkit.SelfCommand(roleSidecar, args...), dir, config)
}

// startSidecarBinary runs the binary bin as the sidecar with args plus
// --dir, --config and an ephemeral HTTP port, and waits until it listens.
func startSidecarBinary(t testing.TB, bin, dir, config string, args ...string) *sidecar {
	t.Helper()
	return startSidecarProcess(t, exec.Command(bin, args...), dir, config)
}

// startSidecarProcess starts cmd with --dir, --config and an ephemeral HTTP
// port added to its arguments, and waits until it listens.
func startSidecarProcess(t testing.TB, cmd *exec.Cmd, dir, config string) *sidecar {
	t.Helper()
	cmd.Args = append(cmd.Args, "--dir", dir, "--config", config, "--metrics-addr", "127.0.0.1:0")
	started := make(chan string, 1)
	p := testkit.Start(t, cmd, testkit.Name("sidecar"), testkit.OnStderr(func(line string) {
		var rec struct {
			Msg      string `json:"msg"`
			HTTPAddr string `json:"httpAddr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "sidecar started" {
			select {
			case started <- rec.HTTPAddr:
			default:
			}
		}
	}))
	s := &sidecar{t: t, proc: p, dir: dir}
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	select {
	case s.addr = <-started:
	case <-p.Done():
		t.Fatalf("sidecar exited before listening: %v", p.Err())
	case <-timeout.C:
		t.Fatal("sidecar did not start")
	}
	return s
}

// logText is what the sidecar has logged so far.
// startReadySidecar starts the sidecar over a new tmpfs with a
// configuration file declaring channels, and waits until it is ready.
func startReadySidecar(t testing.TB, channels string) (dir, cfgPath string, s *sidecar) {
	t.Helper()
	dir = testkit.TmpfsDir(t)
	cfgPath = filepath.Join(t.TempDir(), "channels.yaml")
	writeConfig(t, cfgPath, channels)
	s = startSidecar(t, dir, cfgPath)
	s.waitReady()
	return dir, cfgPath, s
}

func (s *sidecar) logText() string { return s.proc.Stderr() }

// get fetches path from the sidecar's HTTP server.
func (s *sidecar) get(path string) (int, string) {
	s.t.Helper()
	resp, err := http.Get("http://" + s.addr + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func (s *sidecar) snapshot() status.Snapshot {
	s.t.Helper()
	code, body := s.get("/debug/channels")
	if code != http.StatusOK {
		s.t.Fatalf("/debug/channels: %d %s", code, body)
	}
	var snap status.Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		s.t.Fatal(err)
	}
	return snap
}

func (s *sidecar) channel(name string) (status.Channel, bool) {
	for _, c := range s.snapshot().Channels {
		if c.Name == name {
			return c, true
		}
	}
	return status.Channel{}, false
}

// eventually polls cond until it holds, failing the test after 15 s with
// what /readyz said last.
func (s *sidecar) eventually(what string, cond func() bool) {
	s.t.Helper()
	testkit.Eventually(s.t, 15*time.Second, what, func() error {
		if cond() {
			return nil
		}
		code, body := s.get("/readyz")
		return fmt.Errorf("/readyz %d:\n%s", code, body)
	})
}

func (s *sidecar) waitReady() {
	s.t.Helper()
	s.eventually("readiness", func() bool {
		code, _ := s.get("/readyz")
		return code == http.StatusOK
	})
}

// stop sends sig and waits for the exit, returning how long it took and the
// exit status.
func (s *sidecar) stop(sig syscall.Signal, within time.Duration) (time.Duration, error) {
	s.t.Helper()
	start := time.Now()
	if err := s.proc.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	err := s.proc.Wait(s.t, within)
	return time.Since(start), err
}

// peer is a child process registered on a shared-memory channel.
type peer struct{ *testkit.Proc }

func startPeer(t *testing.T, channelPath string) *peer {
	t.Helper()
	p := testkit.Child(t, roleShmPeer, testkit.Env("CHANNEL_PATH="+channelPath))
	p.ExpectLine(t, 30*time.Second, "ready")
	return &peer{p}
}

// leave makes the peer unregister and exit.
func (p *peer) leave(t *testing.T) {
	t.Helper()
	p.Stdin().Close()
	if err := p.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("peer exit: %v", err)
	}
}

func configDoc(channels string) []byte {
	return []byte("apiVersion: podipc.io/v1alpha1\nkind: ChannelConfig\nchannels:\n" + channels)
}

func writeConfig(t testing.TB, path, channels string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, configDoc(channels), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// openProducer opens the channel file at path and registers a producer,
// both closed at the end of the test.
func openProducer(t *testing.T, path string) (*shm.Channel, *shm.Producer) {
	t.Helper()
	ch, err := shm.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	prod, err := ch.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	return ch, prod
}

func shmGeometry(t *testing.T, path string) shm.Options {
	t.Helper()
	ch, err := shm.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	return ch.Options()
}

func channelsDir(dir string) string { return filepath.Join(dir, "shm") }
