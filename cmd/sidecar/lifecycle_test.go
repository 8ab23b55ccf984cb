package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/pkg/mq"
)

const cfgDurableJobs = `
- name: jobs
  type: MessageQueue
  messageQueue: {maxDepth: 100, persistence: Volume}
`

const cfgScratch = `
- name: scratch
  type: MessageQueue
  messageQueue: {}
`

// SIGTERM shuts the real binary down cleanly and quickly and reports, in
// its termination message, what each queue still held and whether it is
// journaled; a new sidecar on the same directory adopts the channel files
// and recovers the journaled queue, so neither an app nor a sidecar restart
// loses data.
func TestGracefulShutdownAndRestart(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	cfgPath := filepath.Join(t.TempDir(), "channels.yaml")
	writeConfig(t, cfgPath, cfgFrames+cfgDurableJobs+cfgScratch)
	// The kubelet creates the file before the container starts.
	termLog := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(termLog, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	first := startSidecar(t, dir, cfgPath, "--termination-log", termLog)
	first.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	framesPath := filepath.Join(channelsDir(dir), "frames")
	ch, prod := openProducer(t, framesPath)
	for i := range 3 {
		if err := prod.Send(ctx, fmt.Appendf(nil, "frame-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	client, err := mq.Dial(ctx, mq.WithSocketPath(podcontract.MQSocketPath(dir)), mq.WithoutReconnect())
	if err != nil {
		t.Fatal(err)
	}
	// riding reconnects (the default): it rides through the restart.
	riding, err := mq.Dial(ctx, mq.WithSocketPath(podcontract.MQSocketPath(dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer riding.Close()
	for i := range 3 {
		if err := client.Send(ctx, "jobs", fmt.Appendf(nil, "job-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if err := client.Send(ctx, "scratch", fmt.Appendf(nil, "scratch-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	before, err := os.Stat(framesPath)
	if err != nil {
		t.Fatal(err)
	}

	took, err := first.stop(syscall.SIGTERM, 10*time.Second)
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, first.logText())
	}
	if took > 5*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	for _, want := range []string{`"msg":"shutting down"`, `"msg":"broker stopped"`, `"msg":"shutdown complete"`,
		`"queue":"scratch","waiting":2,"inFlight":0`, `"unjournaledMessages":2`} {
		if !strings.Contains(first.logText(), want) {
			t.Errorf("logs lack %s", want)
		}
	}
	msg, err := os.ReadFile(termLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"clean shutdown in ", "; 2 unjournaled messages lost\n",
		"queue jobs: 3 waiting, 0 in flight (journaled)\n", "queue scratch: 2 waiting, 0 in flight (no journal)\n"} {
		if !strings.Contains(string(msg), want) {
			t.Errorf("termination message lacks %q:\n%s", want, msg)
		}
	}
	// The client that does not reconnect was told to go away; the socket
	// is gone. The reconnecting one's send waits for the next sidecar.
	if err := client.Send(ctx, "jobs", []byte("late")); err == nil {
		t.Error("send after the broker shut down succeeded")
	}
	client.Close()
	riderSent, err := riding.SendAsync(ctx, "jobs", []byte("job-3"))
	if err != nil {
		t.Fatalf("send while the sidecar is down: %v", err)
	}
	if _, err := os.Stat(podcontract.MQSocketPath(dir)); !os.IsNotExist(err) {
		t.Errorf("broker socket after shutdown: %v", err)
	}

	second := startSidecar(t, dir, cfgPath)
	second.waitReady()
	after, err := os.Stat(framesPath)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("the restarted sidecar replaced frames instead of adopting it")
	}
	c, _ := second.channel("frames")
	if c.SharedMemory == nil || c.SharedMemory.Depth != 3 || c.SharedMemory.Peers["producer"] != 1 {
		t.Fatalf("frames after restart: %+v", c.SharedMemory)
	}
	// The producer kept across the restart still delivers to new consumers.
	if err := prod.Send(ctx, []byte("frame-3")); err != nil {
		t.Fatal(err)
	}
	cons, err := ch.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	buf := make([]byte, 1024)
	for i := range 4 {
		n, err := cons.Recv(ctx, buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("frame-%d", i) {
			t.Fatalf("frame %d = %q, %v", i, buf[:n], err)
		}
	}

	if err := riderSent.Wait(ctx); err != nil {
		t.Fatalf("send made while the sidecar was down, after the restart: %v", err)
	}
	if st := riding.Stats(); !st.Connected || st.Reconnects != 1 {
		t.Fatalf("reconnecting client after the restart: %+v", st)
	}
	client2, err := mq.Dial(ctx, mq.WithSocketPath(podcontract.MQSocketPath(dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer client2.Close()
	for i := range 4 {
		d, err := client2.Receive(ctx, "jobs")
		if err != nil || string(d.Body) != fmt.Sprintf("job-%d", i) {
			t.Fatalf("job %d after restart = %v, %v", i, d, err)
		}
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := second.stop(syscall.SIGINT, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
}

// Without a configuration file the sidecar runs, healthy but not ready, and
// picks the file up when it appears.
func TestReadinessBeforeConfig(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	cfgPath := filepath.Join(t.TempDir(), "channels.yaml")
	s := startSidecar(t, dir, cfgPath) // the file does not exist yet
	s.eventually("the missing file to be reported", func() bool {
		code, body := s.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no such file")
	})
	if code, _ := s.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	writeConfig(t, cfgPath, cfgFrames)
	s.waitReady()
}

func TestInspect(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	cfgPath := filepath.Join(t.TempDir(), "channels.yaml")
	writeConfig(t, cfgPath, cfgFrames+cfgJobs)
	s := startSidecar(t, dir, cfgPath)
	s.waitReady()

	var out, errOut bytes.Buffer
	if code := run([]string{"inspect", "--addr", s.addr, "--dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("inspect exit %d: %s", code, errOut.String())
	}
	text := out.String()
	for _, want := range []string{"generation 1", "NAME", "frames", "Queue/Block", "32×1KiB", "0/32", "jobs", "0/100"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, text)
		}
	}

	// Without the sidecar (wrong address), the headers are read directly.
	out.Reset()
	errOut.Reset()
	if code := run([]string{"inspect", "--addr", "127.0.0.1:1", "--dir", dir, "--timeout", "500ms"}, &out, &errOut); code != 0 {
		t.Fatalf("inspect exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "reading the channel files") || !strings.Contains(out.String(), "frames") || strings.Contains(out.String(), "jobs") {
		t.Errorf("direct inspect: stdout %q stderr %q", out.String(), errOut.String())
	}
}

// The sidecar needs neither root nor a writable root file system: as UID
// 65532 on a read-only root it serves its channels from --dir alone, and
// applications under another UID can use them.
func TestRunsAsNonRootOnReadOnlyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a mount namespace and change UID")
	}
	probe := testkit.SelfCommand(roleHardenProbe)
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if out, err := testkit.Run(t, probe, 30*time.Second); err != nil {
		t.Skipf("cannot make a read-only root here (needs CAP_SYS_ADMIN): %v %s", err, out)
	}
	dir := testkit.TmpfsDir(t)
	// The emptyDir the kubelet makes is world-writable.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// A config directory UID 65532 can read (t.TempDir's parent is private).
	cfgDir, err := os.MkdirTemp("", "podipc-config-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cfgDir) })
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(cfgDir, "channels.yaml")
	writeConfig(t, cfgPath, cfgFrames+cfgDurableJobs)
	hardened := testkit.SelfCommand(roleHardenedSidecar, "--resync-interval", "50ms")
	hardened.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	s := startSidecarProcess(t, hardened, dir, cfgPath)
	s.waitReady()
	fi, err := os.Stat(filepath.Join(channelsDir(dir), "frames"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != hardenedUID {
		t.Errorf("channel file owned by UID %d, want %d", st.Uid, hardenedUID)
	}
	// An application running as yet another UID opens the channel and the
	// broker socket.
	out, err := testkit.Run(t, testkit.SelfCommand(roleShmPeer), 30*time.Second, testkit.AsUser(1000),
		testkit.Env("CHANNEL_PATH="+filepath.Join(channelsDir(dir), "frames"), "MQ_SOCKET="+podcontract.MQSocketPath(dir)))
	if err != nil || !strings.Contains(out, "ready") {
		t.Errorf("app as UID 1000: %v: %s", err, out)
	}
	if _, err := s.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("exit: %v\n%s", err, s.logText())
	}
}

// A journal replaced by a link to /dev/zero while the sidecar was down is
// not read: the sidecar starts, the queue is empty and serves, and /readyz,
// /debug/channels and the metrics say which queue's journal was refused.
func TestRefusedJournalIsReported(t *testing.T) {
	dir, cfgPath, s := startReadySidecar(t, cfgDurableJobs)
	if _, err := s.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("exit: %v\n%s", err, s.logText())
	}
	journal := filepath.Join(podcontract.JournalDir(dir), "jobs.journal")
	if err := os.Remove(journal); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", journal); err != nil {
		t.Fatal(err)
	}

	s = startSidecar(t, dir, cfgPath)
	s.waitReady()
	code, body := s.get("/readyz")
	if code != http.StatusOK || !strings.Contains(body, "warning: MessageQueue jobs: the journal was refused") || !strings.Contains(body, "symbolic link") {
		t.Errorf("/readyz: %d %q, want ok with a warning naming jobs and why", code, body)
	}
	if ch, ok := s.channel("jobs"); !ok || ch.MessageQueue == nil || ch.MessageQueue.JournalRefused == "" {
		t.Errorf("/debug/channels jobs = %+v, want journalRefused", ch)
	}
	if got := metricValue(t, s, "podipc_mq_journal_refused", map[string]string{"queue": "jobs"}); got != 1 {
		t.Errorf("podipc_mq_journal_refused{queue=jobs} = %v, want 1", got)
	}
	if !strings.Contains(s.logText(), "refused the journal") {
		t.Errorf("no error log line about the refused journal:\n%s", s.logText())
	}
}
