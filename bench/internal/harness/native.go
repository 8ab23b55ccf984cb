package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Names of the native-client backends.
const (
	nameCSpin  = "c-spin"
	nameCBlock = "c-block"
	namePyCopy = "py-copy"
	namePyZC   = "py-zerocopy"
)

// nativeClient measures one of podipc's native clients: both sides of a job
// are a peer program written against the client library, libpodipc
// (bench/cclient/peer.c) or the podipc Python package
// (bench/pyclient/peer.py), on the pair of Queue-mode channels shm-spin uses,
// created here with pkg/shm. The peers run the harness's loops, stamps and
// checks in their own language; side B starts first, side A once B is
// attached. A round trip's samples come back to the harness, which
// summarises them as it does its own.
type nativeClient struct {
	python bool
	// wait is the peers' wait strategy: spin, block or hybrid.
	wait string
	// api is the Python peers' API: copy (send / recv_into), zerocopy
	// (reserve / commit, borrow / release) or mq (podipc.mq through a
	// broker). The C peers copy.
	api string
	// setup sets up the link of a job; nil: the pair of channels. A link
	// with a peerArgs() []string method adds those to the peers' arguments.
	setup func(LinkSpec) (Link, error)
}

// nativeMsg is a line of a native peer's output: {"ready":true}, then
// {"done":true,...} with its figures, or {"error":"..."}.
type nativeMsg struct {
	peerMsg
	Samples []int64 `json:"samples_ns,omitempty"`
}

func (n nativeClient) Measure(ctx context.Context, env Env, job Job) (Result, error) {
	res := Result{Backend: job.Backend, Kind: job.Kind, Size: job.Size}
	cmd, err := n.command(ctx, env)
	if err != nil {
		return res, err
	}
	setup := n.setup
	if setup == nil {
		setup = shmTransport{}.Setup
	}
	link, err := setup(job.linkSpec())
	if err != nil {
		return res, fmt.Errorf("set up link: %w", err)
	}
	defer link.Close()
	args, err := n.args(job, link.Handoff().Params)
	if err != nil {
		return res, err
	}
	if l, ok := link.(interface{ peerArgs() []string }); ok {
		args = append(args, l.peerArgs()...)
	}

	ctx, cancel := context.WithTimeout(ctx, job.timeout())
	defer cancel()
	// A side that fails ends the job: the other may wait for ever for it.
	// The first to fail is the one whose account comes first.
	var mu sync.Mutex
	first := ""
	onFailure := func(side string) {
		mu.Lock()
		if first == "" {
			first = side
		}
		mu.Unlock()
		cancel()
	}
	b, err := startNative(ctx, cmd, "B", append(args, "role=b", "cpu="+strconv.Itoa(job.CPUs[1])), onFailure)
	if err != nil {
		return res, err
	}
	defer b.stop()
	if _, err := b.await(isReady); err != nil {
		return res, fmt.Errorf("peer setup: %w", err)
	}
	a, err := startNative(ctx, cmd, "A", append(args, "role=a", "cpu="+strconv.Itoa(job.CPUs[0])), onFailure)
	if err != nil {
		return res, err
	}
	defer a.stop()
	doneA, errA := a.await(isDone)
	if errA != nil {
		onFailure("A")
	}
	doneB, errB := b.await(isDone)
	if errA != nil || errB != nil {
		mu.Lock()
		bFirst := first == "B"
		mu.Unlock()
		if bFirst {
			return res, errors.Join(errB, errA)
		}
		return res, errors.Join(errA, errB)
	}
	switch job.Kind {
	case KindRTT:
		if len(doneA.Samples) == 0 {
			return res, errors.New("side A reported no round trips")
		}
		res.RTT = summarize(doneA.Samples)
	case KindThroughput:
		res.Throughput = newThroughput(doneB.Messages, time.Duration(doneB.Nanos).Seconds(), job.Size)
	}
	return res, nil
}

func isReady(m nativeMsg) bool { return m.Ready }
func isDone(m nativeMsg) bool  { return m.Done }

// args are the peers' arguments for job (both sides; the role and CPU come
// on top).
func (n nativeClient) args(job Job, params map[string]string) ([]string, error) {
	kind := "rtt"
	switch job.Kind {
	case KindRTT:
	case KindThroughput:
		kind = "tput"
	default:
		return nil, fmt.Errorf("unknown kind %q", job.Kind)
	}
	args := []string{
		"kind=" + kind,
		"size=" + strconv.Itoa(job.Size),
		"ab=" + params[paramAToB],
		"ba=" + params[paramBToA],
		"warmup=" + strconv.Itoa(max(job.Warmup, 1)),
		"samples=" + strconv.Itoa(max(job.Samples, 1)),
		"budget_ms=" + strconv.FormatInt(job.Budget.Milliseconds(), 10),
		"duration_ms=" + strconv.FormatInt(max(job.Duration.Milliseconds(), 1), 10),
		"verify_every=" + strconv.Itoa(max(job.VerifyEvery, 1)),
		"wait=" + n.wait,
		"timeout_s=" + strconv.Itoa(int(job.timeout().Seconds())),
	}
	if n.python {
		args = append(args, "api="+n.api)
	}
	return args, nil
}

// nativeCmd is how to start a native peer: a program with its first
// arguments and extra environment.
type nativeCmd struct {
	argv []string
	env  []string
}

// command builds (or finds in the cache) what the peers need: libpodipc and,
// for C, the peer program linked against it; for Python, the interpreter,
// the podipc package and the peer script. The tools are looked for first, so
// that a missing one is named before anything is built.
func (n nativeClient) command(ctx context.Context, env Env) (nativeCmd, error) {
	clients, err := findClients()
	if err != nil {
		return nativeCmd{}, err
	}
	var py string
	if n.python {
		if py, err = findPython(clients); err != nil {
			return nativeCmd{}, err
		}
	}
	lib, err := buildLibpodipc(ctx, env, clients)
	if err != nil {
		return nativeCmd{}, err
	}
	if !n.python {
		peer, err := buildCPeer(ctx, env, clients, lib)
		return nativeCmd{argv: []string{peer}}, err
	}
	return pythonCommand(env, py, clients, lib)
}

// nativeProc is one running native peer.
type nativeProc struct {
	side   string
	cmd    *exec.Cmd
	out    *os.File
	dec    *json.Decoder
	stderr bytes.Buffer
	exited chan struct{}
	// waitErr is set before exited is closed.
	waitErr error
}

// startNative starts side (A or B) of a job; onFailure is called with the
// side when the process ends unsuccessfully, before await sees it end.
func startNative(ctx context.Context, c nativeCmd, side string, args []string, onFailure func(side string)) (*nativeProc, error) {
	// An *os.File as the child's stdout is handed over as it is, with no
	// copying goroutine, so Wait may run while the output is read.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("side %s output pipe: %w", side, err)
	}
	defer w.Close()
	p := &nativeProc{side: side, out: r, dec: json.NewDecoder(r), exited: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, c.argv[0], append(c.argv[1:], args...)...)
	p.cmd.Env = append(os.Environ(), c.env...)
	p.cmd.Stdout, p.cmd.Stderr = w, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("start side %s (%s): %w", side, c.argv[0], err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		if p.waitErr != nil {
			onFailure(side)
		}
		close(p.exited)
	}()
	return p, nil
}

// await reads the peer's output until want accepts a line, or the peer
// reports an error or ends without the line.
func (p *nativeProc) await(want func(nativeMsg) bool) (nativeMsg, error) {
	for {
		var m nativeMsg
		if err := p.dec.Decode(&m); err != nil {
			// The peer closed its output: it has exited or is about to.
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
			}
			return m, fmt.Errorf("side %s: read output: %w%s", p.side, err, p.status())
		}
		if m.Error != "" {
			return m, fmt.Errorf("side %s: %s", p.side, m.Error)
		}
		if want(m) {
			return m, nil
		}
	}
}

// status describes how the peer ended, with the end of its standard error.
func (p *nativeProc) status() string {
	select {
	case <-p.exited:
	default:
		return ""
	}
	s := fmt.Sprintf("; exit: %v", p.waitErr)
	if p.waitErr == nil {
		s = "; exited"
	}
	if e := bytes.TrimSpace(p.stderr.Bytes()); len(e) > 0 {
		s += fmt.Sprintf("; stderr: %s", e[max(len(e)-2048, 0):])
	}
	return s
}

// stop kills the peer if it is still running and waits for it.
func (p *nativeProc) stop() {
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.out.Close()
}

// nativeTargets are the native clients' promises (issue 10), checked as
// ratios within one run like the others.
func nativeTargets() []target {
	return []target{
		{name: "C client spinning rtt p50 within 1.2× of the C ring", subject: nameCSpin, baseline: nameCRing,
			kind: KindRTT, size: 64, metric: p50, limit: 1.2, atMost: true},
		{name: "C client 64 B throughput at least 0.8× the C ring's", subject: nameCSpin, baseline: nameCRing,
			kind: KindThroughput, size: 64, metric: msgsPerS, limit: 0.8},
		{name: "Python zero-copy 1 MiB throughput at least half the C client's", subject: namePyZC, baseline: nameCSpin,
			kind: KindThroughput, size: 1 << 20, metric: gbPerS, limit: 0.5},
	}
}
