package testkit_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/testkit"
)

// innerEnv makes one of the Inner tests run: the tests below run this test
// binary's tests in a child to see what a failing or dying test does.
const innerEnv = "PODIPC_TESTKIT_TEST_INNER"

func TestMain(m *testing.M) {
	testkit.Main(m, testkit.Roles{
		"echo": echo,
		"hang": func([]string) error {
			fmt.Println("ready")
			<-time.After(time.Hour) // until killed
			return nil
		},
		"whoami": func([]string) error {
			fmt.Println(os.Getuid(), os.Getgid(), os.Getenv("PODIPC_TESTKIT_UID"))
			return nil
		},
	})
}

// echo writes a line to stderr, says "ready" with its arguments and
// ECHO_ENV, then echoes stdin lines back in upper case; at end of file it
// exits with the status its first argument names.
func echo(args []string) error {
	fmt.Fprintln(os.Stderr, "echo's stderr") // first: captured once "ready" is read
	fmt.Printf("ready %q %s\n", args, os.Getenv("ECHO_ENV"))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println(strings.ToUpper(sc.Text()))
	}
	code, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	return testkit.Exit(code)
}

func exitStatus(t *testing.T, err error) syscall.WaitStatus {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("exit error %v (%T), want an *exec.ExitError", err, err)
	}
	return ee.Sys().(syscall.WaitStatus)
}

func TestChildArgsEnvStreamsAndStatus(t *testing.T) {
	p := testkit.Start(t, testkit.SelfCommand("echo", "7", "two words"), testkit.Env("ECHO_ENV=set"))
	if p.Name() != "echo" {
		t.Errorf("Name = %q, want the role", p.Name())
	}
	p.ExpectLine(t, 30*time.Second, `ready ["7" "two words"] set`)
	if _, err := io.WriteString(p.Stdin(), "one\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	p.ExpectLine(t, 30*time.Second, "ONE")
	if l := p.Line(t, 30*time.Second); l != "TWO" {
		t.Fatalf("second echo %q", l)
	}
	if err := p.Stdin().Close(); err != nil {
		t.Fatal(err)
	}
	err := p.Wait(t, 30*time.Second)
	if ws := exitStatus(t, err); ws.ExitStatus() != 7 {
		t.Fatalf("exit status %v, want 7", ws)
	}
	if !p.Exited() || p.Err() != err {
		t.Fatalf("after Wait: Exited %v, Err %v", p.Exited(), p.Err())
	}
	if _, ok := <-p.Lines(); ok {
		t.Error("Lines still open after the child exited and its output was read")
	}
	if got := p.Stderr(); got != "echo's stderr\n" {
		t.Errorf("Stderr = %q", got)
	}
	if got := p.Stdout(); got != "ready [\"7\" \"two words\"] set\nONE\nTWO\n" {
		t.Errorf("Stdout = %q", got)
	}
}

func TestWaitSuccessAndOnStderr(t *testing.T) {
	var seen []string
	p := testkit.Start(t, testkit.SelfCommand("echo", "0"), testkit.OnStderr(func(l string) { seen = append(seen, l) }))
	p.Stdin().Close()
	p.WaitSuccess(t, 30*time.Second)
	// Done is closed after the last stderr line was handed on.
	if len(seen) != 1 || seen[0] != "echo's stderr" {
		t.Fatalf("OnStderr saw %q", seen)
	}
}

func TestUnknownRole(t *testing.T) {
	p := testkit.Child(t, "no-such-role")
	if ws := exitStatus(t, p.Wait(t, 30*time.Second)); ws.ExitStatus() != 2 || !strings.Contains(p.Stderr(), `unknown child role "no-such-role"`) {
		t.Fatalf("exit %v, stderr %q", ws, p.Stderr())
	}
}

// The test's cleanup kills a child still running and reaps it.
func TestCleanupKillsAndReaps(t *testing.T) {
	var p *testkit.Proc
	t.Run("child", func(t *testing.T) {
		p = testkit.Child(t, "hang")
		p.ExpectLine(t, 30*time.Second, "ready")
	})
	if !p.Exited() {
		t.Fatal("the child outlived its test")
	}
	if ws := exitStatus(t, p.Err()); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended with %v, want SIGKILL", ws)
	}
	if err := unix.Kill(p.Pid(), 0); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("kill(%d, 0) = %v: not reaped", p.Pid(), err)
	}
}

func TestKill(t *testing.T) {
	p := testkit.Child(t, "hang")
	p.ExpectLine(t, 30*time.Second, "ready")
	if ws := exitStatus(t, p.Kill()); ws.Signal() != syscall.SIGKILL {
		t.Fatalf("Kill: %v", ws)
	}
	if !p.Exited() {
		t.Fatal("Kill returned before the child was reaped")
	}
}

// Pdeathsig is tied to the thread that forks the child: a child must not
// die because the thread of the goroutine that started it ended.
func TestChildOutlivesTheStartingThread(t *testing.T) {
	type started struct {
		p   *testkit.Proc
		tid int
	}
	c := make(chan started)
	var s started
	for s.p == nil {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			if unix.Gettid() == os.Getpid() {
				// The main thread does not end: it is parked instead.
				c <- started{}
				return
			}
			c <- started{testkit.Child(t, "echo", testkit.Name("survivor")), unix.Gettid()}
		}()
		s = <-c
	}
	task := fmt.Sprintf("/proc/self/task/%d", s.tid)
	testkit.EventuallyTrue(t, 30*time.Second, "the starting thread to end", func() bool {
		_, err := os.Stat(task)
		return errors.Is(err, os.ErrNotExist)
	})
	s.p.ExpectLine(t, 30*time.Second, `ready [] `)
	if _, err := io.WriteString(s.p.Stdin(), "still here\n"); err != nil {
		t.Fatal(err)
	}
	s.p.ExpectLine(t, 30*time.Second, "STILL HERE")
}

// A child gets SIGKILL when the test process that started it dies. The
// test process here is an inner test that starts a hanging child and is
// then SIGKILLed; this process, a subreaper, inherits the orphan and reaps
// it.
func TestPdeathsigKillsChildOfDeadTest(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a subreaper: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	inner := testkit.Start(t, innerTest("TestInnerStartsAndHangs"))
	var pid int
	for pid == 0 {
		l := inner.Line(t, 30*time.Second)
		if v, ok := strings.CutPrefix(l, "grandchild "); ok {
			var err error
			if pid, err = strconv.Atoi(v); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() {
		_ = unix.Kill(pid, unix.SIGKILL)
		_, _ = unix.Wait4(pid, nil, unix.WNOHANG, nil)
	})
	if ws := exitStatus(t, inner.Kill()); ws.Signal() != syscall.SIGKILL {
		t.Fatalf("inner test: %v", ws)
	}
	var ws unix.WaitStatus
	testkit.Eventually(t, 30*time.Second, "the orphaned grandchild to die", func() error {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			return err
		}
		if got != pid {
			return fmt.Errorf("grandchild %d still running", pid)
		}
		return nil
	})
	if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Fatalf("the grandchild ended with %v, want SIGKILL", ws)
	}
}

// innerTest is this test binary running only the Inner test name.
func innerTest(name string) *exec.Cmd {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), innerEnv+"="+name)
	return cmd
}

func requireInner(t *testing.T) {
	if os.Getenv(innerEnv) != t.Name() {
		t.Skip("run by another test")
	}
}

func TestInnerStartsAndHangs(t *testing.T) {
	requireInner(t)
	g := testkit.Child(t, "hang")
	g.ExpectLine(t, 30*time.Second, "ready")
	fmt.Println("grandchild", g.Pid())
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
}

func TestInnerFails(t *testing.T) {
	requireInner(t)
	p := testkit.Start(t, testkit.SelfCommand("echo", "0"), testkit.Name("noisy"))
	p.ExpectLine(t, 30*time.Second, `ready ["0"] `)
	t.Fatal("the inner test fails")
}

func TestInnerPasses(t *testing.T) {
	requireInner(t)
	p := testkit.Start(t, testkit.SelfCommand("echo", "0"), testkit.Name("noisy"))
	p.ExpectLine(t, 30*time.Second, `ready ["0"] `)
}

// A failed test's log shows its children's output; a passing one's does not.
func TestFailedTestShowsChildOutput(t *testing.T) {
	out, err := testkit.Run(t, innerTest("TestInnerFails"), time.Minute)
	if err == nil {
		t.Fatalf("the failing inner test passed:\n%s", out)
	}
	for _, want := range []string{"the inner test fails", "child noisy", "--- noisy stderr:", "echo's stderr", "--- noisy stdout:", `ready ["0"]`} {
		if !strings.Contains(out, want) {
			t.Errorf("the failed test's output lacks %q:\n%s", want, out)
		}
	}
	out, err = testkit.Run(t, innerTest("TestInnerPasses"), time.Minute)
	if err != nil || strings.Contains(out, "echo's stderr") {
		t.Fatalf("passing inner test: %v\n%s", err, out)
	}
}

func TestRunReturnsStartErrors(t *testing.T) {
	if _, err := testkit.Run(t, exec.Command(filepath.Join(t.TempDir(), "missing")), time.Minute); err == nil {
		t.Fatal("Run of a missing binary succeeded")
	}
	out, err := testkit.Run(t, exec.Command("sh", "-c", "echo out; echo err >&2; exit 3"), time.Minute)
	if ws := exitStatus(t, err); ws.ExitStatus() != 3 || out != "out\nerr\n" {
		t.Fatalf("Run = %q, %v", out, ws)
	}
}

func TestAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change UID")
	}
	p := testkit.Child(t, "whoami", testkit.AsUser(65534))
	p.WaitSuccess(t, 30*time.Second)
	// The variable is consumed: the child's own children are not dropped.
	if got := p.Stdout(); got != "65534 65534 \n" {
		t.Fatalf("the child runs as %q, want 65534 65534 and no variable", got)
	}
}

// fakeTB records what Eventually reports instead of failing the test.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
}

func TestEventuallyReportsTheLastError(t *testing.T) {
	f := &fakeTB{TB: t}
	calls := 0
	start := time.Now()
	testkit.Eventually(f, 50*time.Millisecond, "the thing", func() error {
		calls++
		return fmt.Errorf("attempt %d", calls)
	})
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("gave up after %v", took)
	}
	if want := fmt.Sprintf("the thing: not within 50ms: attempt %d", calls); f.fatal != want || calls < 2 {
		t.Fatalf("reported %q after %d calls, want %q", f.fatal, calls, want)
	}
}

func TestEventuallySucceeds(t *testing.T) {
	f := &fakeTB{TB: t}
	calls := 0
	testkit.EventuallyTrue(f, time.Minute, "the third call", func() bool { calls++; return calls == 3 })
	if f.fatal != "" || calls != 3 {
		t.Fatalf("reported %q after %d calls", f.fatal, calls)
	}
	testkit.EventuallyTrue(f, time.Millisecond, "never", func() bool { return false })
	if f.fatal != "never: not within 1ms: the condition is still false" {
		t.Fatalf("reported %q", f.fatal)
	}
}

func TestTmpfsDir(t *testing.T) {
	var dir string
	t.Run("use", func(t *testing.T) {
		dir = testkit.TmpfsDir(t)
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
			t.Fatalf("%s: type %#x, %v: not a tmpfs", dir, st.Type, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after its test: %v", dir, err)
	}
}

func TestSizedTmpfs(t *testing.T) {
	dir := testkit.SizedTmpfs(t, 1<<20)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks*uint64(st.Bsize) != 1<<20 {
		t.Fatalf("%s: %+v, %v", dir, st, err)
	}
}
