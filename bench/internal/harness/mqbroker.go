package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
)

// The podipc mq transports talk through a broker that runs, as the sidecar
// would, in a process of its own: this binary re-executed in the broker role
// (PeerMain dispatches it), started by the link's Setup in the coordinator
// and stopped by the link's Close. The broker process is not pinned: like a
// sidecar, it runs wherever the scheduler puts it.

// brokerEnv carries the broker's specification (JSON) to the broker process
// and marks it as one.
const brokerEnv = "PODIPC_BENCH_MQ_BROKER"

// brokerProfileEnv, when set in the coordinator's environment, makes every
// broker process write a CPU profile to its value plus "." and its pid, and
// each mq side one of its whole process to its value plus "." its pid "."
// the queue it sends to.
const brokerProfileEnv = "PODIPC_BENCH_MQ_CPUPROFILE"

// brokerReady is the line the broker process prints on stdout once it
// serves.
const brokerReady = "ready"

// childStartTimeout bounds how long a helper process may take to be ready.
const childStartTimeout = 10 * time.Second

// brokerSpec is what the broker process serves.
type brokerSpec struct {
	Socket         string                 `json:"socket"`
	MaxMessageSize int                    `json:"max_message_size"`
	Queues         []mqbroker.QueueConfig `json:"queues"`
}

// isBroker reports whether this process was started as an mq broker.
func isBroker() bool {
	_, ok := os.LookupEnv(brokerEnv)
	return ok
}

// brokerMain runs the broker role and returns the process exit code.
func brokerMain() int {
	if path := os.Getenv(brokerProfileEnv); path != "" {
		stop, err := startCPUProfile(fmt.Sprintf("%s.%d", path, os.Getpid()))
		if err != nil {
			fmt.Fprintf(os.Stderr, "podipc-bench mq broker: %v\n", err)
			return 1
		}
		defer stop()
	}
	if err := serveBroker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "podipc-bench mq broker: %v\n", err)
		return 1
	}
	return 0
}

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// serveBroker serves the queues of the spec in brokerEnv, tells ready once it
// accepts connections, and shuts down when ctrl reaches end of file (the
// coordinator closed it, or died).
func serveBroker(ctrl io.Reader, ready io.Writer) error {
	var spec brokerSpec
	if err := json.Unmarshal([]byte(os.Getenv(brokerEnv)), &spec); err != nil {
		return fmt.Errorf("decode broker spec: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := mqbroker.New(mqbroker.Options{Logger: log, MaxMessageSize: spec.MaxMessageSize})
	if err != nil {
		return fmt.Errorf("new broker: %w", err)
	}
	if err := b.Apply(context.Background(), spec.Queues); err != nil {
		return fmt.Errorf("declare queues: %w", err)
	}
	ln, err := mqbroker.Listen(spec.Socket, 0o600)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()
	if _, err := fmt.Fprintln(ready, brokerReady); err != nil {
		return errors.Join(fmt.Errorf("report ready: %w", err), b.Close())
	}
	released := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, ctrl)
		close(released)
	}()
	select {
	case <-released:
	case err := <-served:
		return errors.Join(fmt.Errorf("serve: %w", err), b.Close())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return b.Shutdown(ctx)
}

// brokerProcess is a running broker process.
type brokerProcess struct {
	*child
	ctrl io.WriteCloser // closing it stops the broker
}

// startBroker starts this binary in the broker role for spec and waits until
// it serves.
func startBroker(spec brokerSpec) (*brokerProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	enc, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode broker spec: %w", err)
	}
	ctrlR, ctrlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("broker control pipe: %w", err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		ctrlR.Close()
		ctrlW.Close()
		return nil, fmt.Errorf("broker ready pipe: %w", err)
	}
	defer readyR.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), brokerEnv+"="+string(enc))
	cmd.Stdin, cmd.Stdout = ctrlR, readyW
	c, err := startChild("mq broker", cmd)
	// The broker holds its own copies now.
	ctrlR.Close()
	readyW.Close()
	if err != nil {
		ctrlW.Close()
		return nil, err
	}
	p := &brokerProcess{child: c, ctrl: ctrlW}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(readyR).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s == brokerReady {
			return p, nil
		}
		err = errors.New("broker process ended before it was ready")
	case <-time.After(childStartTimeout):
		err = fmt.Errorf("broker process not ready after %v", childStartTimeout)
	}
	stopErr := p.stop()
	return nil, errors.Join(p.explain(err), stopErr)
}

// stop shuts the broker down and waits for it.
func (p *brokerProcess) stop() error {
	p.ctrl.Close()
	return p.child.stop()
}

// child is a helper process of a link: the mq broker or the NATS server.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *tailBuffer
	// exited is closed when the process has exited; err is then its status.
	exited chan struct{}
	err    error
}

// childStopGrace is how long a helper process may take to exit when asked.
const childStopGrace = 5 * time.Second

// startChild starts cmd, keeping the tail of its stderr for error messages.
// The kernel kills the process (PR_SET_PDEATHSIG) if the thread that started
// it exits, so cmd is started from a goroutine that keeps its OS thread
// locked until the process has exited: a helper outlives neither this
// process nor its link.
func startChild(name string, cmd *exec.Cmd) (*child, error) {
	c := &child{name: name, cmd: cmd, log: &tailBuffer{max: 4 << 10}, exited: make(chan struct{})}
	cmd.Stderr = c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return c, nil
}

// stop waits for the process to exit after it was asked to (by a closed
// pipe or a signal), terminates it after childStopGrace, and kills it if
// that does not help.
func (c *child) stop() error {
	select {
	case <-c.exited:
		return nil
	case <-time.After(childStopGrace):
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return fmt.Errorf("%s did not stop within %v; terminated", c.name, childStopGrace)
	case <-time.After(time.Second):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("%s did not stop within %v; killed", c.name, childStopGrace)
}

// explain adds the process's exit status and the tail of its stderr to err,
// once it has exited (waiting a little for that).
func (c *child) explain(err error) error {
	select {
	case <-c.exited:
	case <-time.After(time.Second):
		return err
	}
	if tail := c.log.String(); tail != "" {
		return fmt.Errorf("%w (%s: %v; stderr: %s)", err, c.name, c.err, tail)
	}
	return fmt.Errorf("%w (%s: %v)", err, c.name, c.err)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
