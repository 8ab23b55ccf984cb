package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// peerEnv carries the job (JSON) to the peer process and marks it as one.
const peerEnv = "PODIPC_BENCH_PEER_JOB"

// firstHandoffFD is the descriptor of the peer's first Handoff file: 0-2 are
// stdio and 3 is the control socket.
const firstHandoffFD = 4

// peerMsg is what the peer tells the coordinator over the control socket:
// first that side B is ready (or why not), then how the run went.
type peerMsg struct {
	Ready       bool   `json:"ready,omitempty"`
	Done        bool   `json:"done,omitempty"`
	Error       string `json:"error,omitempty"`
	Unavailable string `json:"unavailable,omitempty"`
	// Messages were received in Nanos (throughput jobs).
	Messages int64 `json:"messages,omitempty"`
	Nanos    int64 `json:"nanos,omitempty"`
}

func (m peerMsg) err() error {
	switch {
	case m.Unavailable != "":
		return fmt.Errorf("%w: %s", ErrUnavailable, m.Unavailable)
	case m.Error != "":
		return fmt.Errorf("peer: %s", m.Error)
	}
	return nil
}

// runTwoProcess measures a Go transport: it sets the link up, starts the
// peer process for side B, runs side A on this process's pinned thread and
// combines both sides' results.
func runTwoProcess(ctx context.Context, env Env, t Transport, job Job) (Result, error) {
	res := Result{Backend: job.Backend, Kind: job.Kind, Size: job.Size}
	link, err := t.Setup(job.linkSpec())
	if err != nil {
		return res, fmt.Errorf("set up link: %w", err)
	}
	defer link.Close()

	ctx, cancel := context.WithTimeout(ctx, job.timeout())
	defer cancel()
	peer, err := startPeer(env, job, link.Handoff(), cancel)
	if err != nil {
		return res, err
	}
	defer peer.stop()

	conn, err := link.Open()
	if err != nil {
		return res, fmt.Errorf("open side A: %w", err)
	}
	defer conn.Close()
	if err := peer.await(ctx, func(m peerMsg) bool { return m.Ready }); err != nil {
		return res, fmt.Errorf("peer setup: %w", err)
	}

	var samples []int64
	sideA := func() error {
		switch job.Kind {
		case KindRTT:
			samples = make([]int64, job.Samples)
			n, err := pingSide(ctx, conn, job, samples)
			samples = samples[:n]
			return err
		case KindThroughput:
			return sendSide(ctx, conn, job)
		}
		return fmt.Errorf("unknown kind %q", job.Kind)
	}
	stopProfile, err := profileSide(job, "a")
	if err != nil {
		return res, err
	}
	errA := runPinned(job.CPUs[0], func() error { return runTimed(t, sideA) })
	stopProfile()

	awaitCtx := ctx
	if errA != nil {
		// Side B may have said why the link broke; do not wait long for a
		// peer that is still stuck waiting for side A.
		var cancelAwait context.CancelFunc
		awaitCtx, cancelAwait = context.WithTimeout(ctx, 2*time.Second)
		defer cancelAwait()
	}
	var done peerMsg
	errB := peer.await(awaitCtx, func(m peerMsg) bool {
		done = m
		return m.Done
	})
	if err := errors.Join(errB, errA); err != nil {
		// The peer's account comes first: when side B fails, side A
		// usually sees only a broken link.
		return res, err
	}
	switch job.Kind {
	case KindRTT:
		res.RTT = summarize(samples)
	case KindThroughput:
		res.Throughput = newThroughput(done.Messages, time.Duration(done.Nanos).Seconds(), job.Size)
	}
	return res, nil
}

// profileSide starts the CPU profile of one side ("a" or "b") of job's
// timed loop, if the job asks for profiles; stop ends and writes it.
func profileSide(job Job, side string) (stop func(), err error) {
	if job.Profile == "" {
		return func() {}, nil
	}
	return startCPUProfile(job.Profile + "-" + side + ".pprof")
}

// runPinned runs fn on a fresh OS thread pinned to cpu and waits for it.
func runPinned(cpu int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		if err := pinThread(cpu); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// peerProcess is the running side B.
type peerProcess struct {
	cmd    *exec.Cmd
	ctrl   *os.File
	dec    *json.Decoder
	exited chan struct{}
	// waitErr is set before exited is closed.
	waitErr error
}

// startPeer re-executes env.Self as the peer of job. onFailure is called
// when the peer exits unsuccessfully, to stop side A waiting for it.
func startPeer(env Env, job Job, h Handoff, onFailure func()) (*peerProcess, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Non-blocking, so that the os.File is pollable and honours deadlines.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctrl := os.NewFile(uintptr(fds[0]), "control")
	peerCtrl := os.NewFile(uintptr(fds[1]), "control-peer")
	defer peerCtrl.Close()
	defer func() {
		for _, f := range h.Files {
			f.Close()
		}
	}()

	job.Params = h.Params
	job.Files = len(h.Files)
	spec, err := json.Marshal(job)
	if err != nil {
		ctrl.Close()
		return nil, fmt.Errorf("encode job: %w", err)
	}
	cmd := exec.Command(env.Self)
	cmd.Env = append(os.Environ(), peerEnv+"="+string(spec))
	cmd.ExtraFiles = append([]*os.File{peerCtrl}, h.Files...)
	cmd.Stdout = os.Stderr // stdout may carry the JSON report
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		ctrl.Close()
		return nil, fmt.Errorf("start peer %s: %w", env.Self, err)
	}
	p := &peerProcess{cmd: cmd, ctrl: ctrl, dec: json.NewDecoder(ctrl), exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
		if p.waitErr != nil {
			onFailure()
		}
	}()
	return p, nil
}

// await reads control messages until want accepts one or one reports an
// error, the peer dies, or ctx ends.
func (p *peerProcess) await(ctx context.Context, want func(peerMsg) bool) error {
	if deadline, ok := ctx.Deadline(); ok {
		if err := p.ctrl.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("control socket deadline: %w", err)
		}
	}
	for {
		var m peerMsg
		if err := p.dec.Decode(&m); err != nil {
			return p.explain(fmt.Errorf("read peer control message: %w", err))
		}
		if err := m.err(); err != nil {
			return err
		}
		if want(m) {
			return nil
		}
	}
}

// explain adds the peer's exit status to err once the peer has exited.
func (p *peerProcess) explain(err error) error {
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("peer exited (%w): %w", p.waitErr, err)
		}
	case <-time.After(time.Second):
	}
	return err
}

// stop ends the peer if it is still running and waits for it.
func (p *peerProcess) stop() {
	p.ctrl.Close() // a live peer sees EOF and gives up
	select {
	case <-p.exited:
		return
	case <-time.After(5 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}
