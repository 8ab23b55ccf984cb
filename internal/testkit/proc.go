package testkit

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// selfArgs come first on a re-executed test binary's command line: should
// its TestMain not be Main, it runs no test instead of all of them.
var selfArgs = []string{"-test.run=^$", "--"}

// failureLines is how many of a child's last stdout lines the log of a
// failed test shows (stderr is shown whole).
const failureLines = 100

// waitDelay bounds how long reaping a child waits for its output pipes
// once it has exited (a grandchild may hold them open).
const waitDelay = 10 * time.Second

// An Option configures a child before it starts.
type Option func(*options)

type options struct {
	env      []string
	name     string
	onStderr func(string)
}

// Env adds variables ("NAME=value") to the child's environment, which is
// otherwise the command's (the test process's when the command sets none).
func Env(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// Name is what logs and failure messages call the child (default: its
// role, or the command's base name).
func Name(name string) Option {
	return func(o *options) { o.name = name }
}

// AsUser makes a re-executed child (Child, SelfCommand) switch to UID and
// GID uid before it runs its role; the test process must be root. Unlike
// SysProcAttr.Credential, the binary need not be accessible to uid.
func AsUser(uid int) Option {
	return Env(uidEnv + "=" + strconv.Itoa(uid))
}

// OnStderr calls fn with each line the child writes to stderr, in order, as
// it arrives. fn must not block; the lines are captured all the same.
func OnStderr(fn func(line string)) Option {
	return func(o *options) { o.onStderr = fn }
}

// SelfCommand is the test binary re-executed to play role (see Main) with
// args, for Start; Child is the short way when the command needs nothing
// set beyond options.
func SelfCommand(role string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe, append(append([]string(nil), selfArgs...), args...)...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	return cmd
}

// Child starts the test binary playing role, as Start does.
func Child(t testing.TB, role string, opts ...Option) *Proc {
	t.Helper()
	return Start(t, SelfCommand(role), opts...)
}

// Start starts cmd (a SelfCommand or a real binary) as a child of the test,
// failing the test if it cannot. The kit owns the command's standard
// streams: stdin is a pipe (Stdin), stdout and stderr are captured, and
// stdout is also read line by line (Line, Lines). The child gets SIGKILL
// when the test process dies, whatever the rest of cmd.SysProcAttr says;
// when the test ends it is killed and reaped, and if the test failed its
// output is logged.
func Start(t testing.TB, cmd *exec.Cmd, opts ...Option) *Proc {
	t.Helper()
	p, err := start(t, cmd, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Run runs cmd as Start would, with stdin closed, waits up to within for
// it to exit and returns its stdout followed by its stderr and its exit
// status; an error starting it is returned too, not a test failure.
func Run(t testing.TB, cmd *exec.Cmd, within time.Duration, opts ...Option) (string, error) {
	t.Helper()
	p, err := start(t, cmd, opts)
	if err != nil {
		return "", err
	}
	_ = p.stdin.Close()
	err = p.Wait(t, within)
	return p.Stdout() + p.Stderr(), err
}

// Proc is a running (or exited) child process.
type Proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout stream
	stderr stream
	queue  lineQueue
	lines  chan string

	done    chan struct{} // closed once reaped and its output captured
	err     error         // the exit status, set before done is closed
	cleaned chan struct{} // closed when the test's cleanup has reaped it
}

func start(t testing.TB, cmd *exec.Cmd, opts []Option) (*Proc, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if cmd.Stdin != nil || cmd.Stdout != nil || cmd.Stderr != nil {
		t.Fatalf("testkit: %v: the kit owns the child's standard streams", cmd.Args)
	}
	if len(o.env) > 0 {
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, o.env...)
	}
	if o.name == "" {
		o.name = defaultName(cmd)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.WaitDelay = waitDelay
	p := &Proc{t: t, name: o.name, cmd: cmd, lines: make(chan string), done: make(chan struct{}), cleaned: make(chan struct{})}
	p.queue.wake = make(chan struct{}, 1)
	p.stdout.onLine = p.queue.push
	p.stderr.onLine = o.onStderr
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: stdin: %w", p.name, err)
	}
	p.stdin = stdin
	if err := startOnLockedThread(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go p.reap()
	go p.pump()
	t.Cleanup(p.cleanup)
	return p, nil
}

func defaultName(cmd *exec.Cmd) string {
	for i := len(cmd.Env) - 1; i >= 0; i-- {
		if role, ok := strings.CutPrefix(cmd.Env[i], roleEnv+"="); ok {
			return role
		}
	}
	return filepath.Base(cmd.Path)
}

// starts hands commands to the one goroutine that starts children. It is
// locked to its OS thread and never ends: Pdeathsig fires when the thread
// that forked the child exits, which must mean the test process died, not
// that the Go runtime retired a thread.
var starts = sync.OnceValue(func() chan<- startRequest {
	c := make(chan startRequest)
	go func() {
		runtime.LockOSThread()
		for r := range c {
			r.err <- r.cmd.Start()
		}
	}()
	return c
})

type startRequest struct {
	cmd *exec.Cmd
	err chan<- error
}

func startOnLockedThread(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	starts() <- startRequest{cmd, errc}
	return <-errc
}

func (p *Proc) reap() {
	err := p.cmd.Wait()
	p.stdout.flush()
	p.stderr.flush()
	p.queue.close()
	p.err = err
	close(p.done)
}

// pump hands the queued stdout lines to Lines' channel, which it closes
// after the last one (or when the test is over).
func (p *Proc) pump() {
	defer close(p.lines)
	for {
		l, ok := p.queue.pop(p.cleaned)
		if !ok {
			return
		}
		select {
		case p.lines <- l:
		case <-p.cleaned:
			return
		}
	}
}

func (p *Proc) cleanup() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
	close(p.cleaned)
	if p.t.Failed() {
		p.t.Logf("%s", p.report())
	}
}

// report describes the child and its output for a failed test's log.
func (p *Proc) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "child %s (%v), %s", p.name, p.cmd.Args, p.status())
	if s := p.Stderr(); s != "" {
		fmt.Fprintf(&b, "\n--- %s stderr:\n%s", p.name, strings.TrimSuffix(s, "\n"))
	}
	if out := strings.Split(strings.TrimSuffix(p.Stdout(), "\n"), "\n"); len(out) > 1 || out[0] != "" {
		if len(out) > failureLines {
			fmt.Fprintf(&b, "\n--- %s stdout, the last %d of %d lines:", p.name, failureLines, len(out))
			out = out[len(out)-failureLines:]
		} else {
			fmt.Fprintf(&b, "\n--- %s stdout:", p.name)
		}
		b.WriteString("\n" + strings.Join(out, "\n"))
	}
	return b.String()
}

func (p *Proc) status() string {
	select {
	case <-p.done:
		if p.err == nil {
			return "exited with status 0"
		}
		return p.err.Error()
	default:
		return "running"
	}
}

// Name is what the logs call the child.
func (p *Proc) Name() string { return p.name }

// Pid is the child's process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stdin is the write end of the child's standard input; closing it gives
// the child end of file.
func (p *Proc) Stdin() io.WriteCloser { return p.stdin }

// Stdout is what the child has written to stdout so far.
func (p *Proc) Stdout() string { return p.stdout.String() }

// Stderr is what the child has written to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Lines delivers the child's stdout lines in order, without the newline;
// it is closed after the last one once the child has exited. Line reads
// from the same channel.
func (p *Proc) Lines() <-chan string { return p.lines }

// Line returns the child's next stdout line, failing the test if there is
// none within the given time or the child's output ended.
func (p *Proc) Line(t testing.TB, within time.Duration) string {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("%s ended its output (%s) before printing a line", p.name, p.status())
		}
		return l
	case <-timer.C:
		t.Fatalf("%s printed no line within %v", p.name, within)
	}
	return ""
}

// ExpectLine reads the child's next stdout line as Line does and fails the
// test unless it is want: the way to wait for a child to say it is ready.
func (p *Proc) ExpectLine(t testing.TB, within time.Duration, want string) {
	t.Helper()
	if l := p.Line(t, within); l != want {
		t.Fatalf("%s said %q, want %q", p.name, l, want)
	}
}

// Done is closed once the child has exited, been reaped, and all its
// output is captured.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err waits for the child to exit and returns its exit status: nil for 0,
// else an *exec.ExitError (or the error reaping it).
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the child.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill SIGKILLs the child unless it has exited, waits until it is reaped
// and returns its exit status.
func (p *Proc) Kill() error {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	return p.Err()
}

// Wait waits up to within for the child to exit, failing the test if it is
// still running then, and returns its exit status.
func (p *Proc) Wait(t testing.TB, within time.Duration) error {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		t.Fatalf("%s still running after %v", p.name, within)
		return nil
	}
}

// WaitSuccess waits as Wait does and fails the test unless the child
// exited with status 0.
func (p *Proc) WaitSuccess(t testing.TB, within time.Duration) {
	t.Helper()
	if err := p.Wait(t, within); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
}

// stream captures what a child writes to one of its outputs and hands
// each complete line to onLine. Its writes come from one goroutine.
type stream struct {
	mu      sync.Mutex
	text    bytes.Buffer
	partial []byte
	onLine  func(string)
}

func (s *stream) Write(b []byte) (int, error) {
	s.mu.Lock()
	s.text.Write(b)
	s.partial = append(s.partial, b...)
	var lines []string
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	s.mu.Unlock()
	if s.onLine != nil {
		for _, l := range lines {
			s.onLine(l)
		}
	}
	return len(b), nil
}

// flush hands on a last line that had no newline.
func (s *stream) flush() {
	s.mu.Lock()
	last := string(s.partial)
	s.partial = nil
	s.mu.Unlock()
	if last != "" && s.onLine != nil {
		s.onLine(last)
	}
}

func (s *stream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.String()
}

// lineQueue holds stdout lines nobody has read yet, however many: the
// child never blocks on a test that does not read its output.
type lineQueue struct {
	mu     sync.Mutex
	lines  []string
	closed bool
	wake   chan struct{} // 1-buffered: something was pushed or it closed
}

func (q *lineQueue) push(l string) {
	q.mu.Lock()
	q.lines = append(q.lines, l)
	q.mu.Unlock()
	q.signal()
}

func (q *lineQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *lineQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop returns the next line, waiting for one; false once the queue is
// closed and empty, or stop is closed.
func (q *lineQueue) pop(stop <-chan struct{}) (string, bool) {
	for {
		q.mu.Lock()
		if len(q.lines) > 0 {
			l := q.lines[0]
			q.lines = q.lines[1:]
			q.mu.Unlock()
			return l, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return "", false
		}
		select {
		case <-q.wake:
		case <-stop:
			return "", false
		}
	}
}
