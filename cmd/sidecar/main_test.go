package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/sidecar/status"
	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/shm"
)

// Child roles of the re-executed test binary.
const (
	roleEnv = "PODIPC_SIDECAR_TEST_ROLE"
	// roleSidecar runs the command itself with the remaining arguments.
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

// uidEnv makes a child started as root drop to this UID (and GID) first.
const uidEnv = "PODIPC_SIDECAR_TEST_UID"

func TestMain(m *testing.M) {
	if uid := os.Getenv(uidEnv); uid != "" {
		if err := dropTo(uid); err != nil {
			fmt.Fprintln(os.Stderr, "drop privileges:", err)
			os.Exit(3)
		}
	}
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case roleSidecar:
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	case roleHardenedSidecar, roleHardenProbe:
		if err := harden(); err != nil {
			fmt.Fprintln(os.Stderr, "harden:", err)
			os.Exit(3)
		}
		if os.Getenv(roleEnv) == roleHardenProbe {
			os.Exit(0)
		}
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
	return dropTo(strconv.Itoa(hardenedUID))
}

// dropTo switches the process to UID and GID uid, without supplementary groups.
func dropTo(uid string) error {
	id, err := strconv.Atoi(uid)
	if err != nil {
		return err
	}
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setgid(id); err != nil {
		return err
	}
	return syscall.Setuid(id)
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
	cmd  *exec.Cmd
	addr string
	dir  string

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error // the exit status, once done is closed
}

// startSidecar runs the command (this test binary in the sidecar role) with
// args plus --dir, --config, an ephemeral HTTP port and short intervals, and
// waits until it listens.
func startSidecar(t testing.TB, dir, config string, args ...string) *sidecar {
	t.Helper()
	args = append([]string{"--resync-interval", "50ms", "--config-poll-interval", "200ms"}, args...)
	return startSidecarBinary(t, os.Args[0], []string{roleEnv + "=" + roleSidecar}, dir, config, args...)
}

// startSidecarBinary runs bin as the sidecar with env added to the
// environment and args plus --dir, --config and an ephemeral HTTP port, and
// waits until it listens.
func startSidecarBinary(t testing.TB, bin string, env []string, dir, config string, args ...string) *sidecar {
	t.Helper()
	return startSidecarProcess(t, exec.Command(bin, args...), env, nil, dir, config)
}

// startSidecarProcess starts cmd with --dir, --config and an ephemeral HTTP
// port added to its arguments, env to its environment and the given process
// attributes, and waits until it listens.
func startSidecarProcess(t testing.TB, cmd *exec.Cmd, env []string, attr *syscall.SysProcAttr, dir, config string) *sidecar {
	t.Helper()
	cmd.Args = append(cmd.Args, "--dir", dir, "--config", config, "--metrics-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = attr
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

func tmpfsDir(t testing.TB) string {
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
