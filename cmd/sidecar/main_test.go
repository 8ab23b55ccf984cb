package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/pkg/shm"
)

// Child roles of the re-executed test binary.
const (
	roleEnv = "PODIPC_SIDECAR_TEST_ROLE"
	// roleSidecar runs the command itself with the remaining arguments.
	roleSidecar = "sidecar"
	// roleShmPeer registers a peer on CHANNEL_PATH, says "ready", and leaves
	// when its stdin closes.
	roleShmPeer = "shm-peer"
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case roleSidecar:
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	case roleShmPeer:
		if err := shmPeer(os.Getenv("CHANNEL_PATH")); err != nil {
			fmt.Fprintln(os.Stderr, "shm peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown role")
		os.Exit(2)
	}
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
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return peer.Close()
}

// sidecar is a running podipc-sidecar process.
type sidecar struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	dir  string

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error // the exit status, once done is closed
}

// startSidecar runs the command with args plus --dir and an ephemeral HTTP
// port, and waits until it listens.
func startSidecar(t *testing.T, dir, config string, args ...string) *sidecar {
	t.Helper()
	args = append([]string{"--dir", dir, "--config", config, "--metrics-addr", "127.0.0.1:0",
		"--resync-interval", "50ms", "--config-poll-interval", "200ms"}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+roleSidecar)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{t: t, cmd: cmd, dir: dir, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.logs.Write(line)
			s.logs.WriteByte('\n')
			s.mu.Unlock()
			var rec struct {
				Msg      string `json:"msg"`
				HTTPAddr string `json:"httpAddr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "sidecar started" {
				started <- rec.HTTPAddr
			}
		}
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("sidecar logs:\n%s", s.logText())
		}
	})
	select {
	case s.addr = <-started:
	case <-s.done:
		t.Fatalf("sidecar exited before listening: %v\n%s", s.err, s.logText())
	case <-time.After(20 * time.Second):
		t.Fatalf("sidecar did not start\n%s", s.logText())
	}
	return s
}

func (s *sidecar) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

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

// eventually polls cond until it holds, failing the test after 15 s.
func (s *sidecar) eventually(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			code, body := s.get("/readyz")
			s.t.Fatalf("timed out waiting for %s; /readyz %d:\n%s", what, code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.done:
		return time.Since(start), s.err
	case <-time.After(within):
		s.t.Fatalf("sidecar still running %v after %v", within, sig)
		return 0, nil
	}
}

// peer is a child process registered on a shared-memory channel.
type peer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startPeer(t *testing.T, channelPath string) *peer {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"="+roleShmPeer, "CHANNEL_PATH="+channelPath)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &peer{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("peer said %q, %v", line, err)
	}
	return p
}

// leave makes the peer unregister and exit.
func (p *peer) leave(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("peer exit: %v", err)
	}
}

func tmpfsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "podipc-sidecar-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func configDoc(channels string) []byte {
	return []byte("apiVersion: podipc.io/v1alpha1\nkind: ChannelConfig\nchannels:\n" + channels)
}

func writeConfig(t *testing.T, path, channels string) {
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
