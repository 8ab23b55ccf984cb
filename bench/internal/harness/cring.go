package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/podipc/podipc/bench/cring"
)

// cRing is the C busy-poll ring of bench/cring, the machine-limit
// baseline. It is compiled on first use into the cache directory and forks
// its own pinned pair of processes.
type cRing struct{}

// cRingOutput is the JSON line ring.c prints.
type cRingOutput struct {
	Error string `json:"error"`
	RTTStats
	Messages int64   `json:"messages"`
	Copies   int64   `json:"copies"`
	Seconds  float64 `json:"seconds"`
}

func (cRing) Measure(ctx context.Context, env Env, job Job) (Result, error) {
	res := Result{Backend: job.Backend, Kind: job.Kind, Size: job.Size}
	args := []string{
		"size=" + strconv.Itoa(job.Size),
		"slots=" + strconv.Itoa(job.Slots),
		"warmup=" + strconv.Itoa(max(job.Warmup, 1)),
		"cpu_a=" + strconv.Itoa(job.CPUs[0]),
		"cpu_b=" + strconv.Itoa(job.CPUs[1]),
		"dir=" + job.Dir,
		"timeout_s=" + strconv.Itoa(int(job.timeout().Seconds())),
	}
	switch job.Kind {
	case KindRTT:
		args = append(args, "mode=rtt", "samples="+strconv.Itoa(job.Samples),
			"budget_ms="+strconv.FormatInt(job.Budget.Milliseconds(), 10))
	case KindThroughput:
		args = append(args, "mode=tput", "duration_ms="+strconv.FormatInt(max(job.Duration.Milliseconds(), 1), 10))
	default:
		return res, fmt.Errorf("unknown kind %q", job.Kind)
	}
	out, err := runCRing(ctx, env, args)
	if err != nil {
		return res, err
	}
	switch job.Kind {
	case KindRTT:
		res.RTT = &out.RTTStats
	case KindThroughput:
		res.Throughput = newThroughput(out.Messages, out.Seconds, job.Size)
	}
	return res, nil
}

// cMemcpy measures single-process memcpy bandwidth with the C library's
// memcpy, on cpu, in GB/s.
func cMemcpy(ctx context.Context, env Env, size, cpu int, d time.Duration) (float64, error) {
	out, err := runCRing(ctx, env, []string{
		"mode=memcpy",
		"size=" + strconv.Itoa(size),
		"cpu_a=" + strconv.Itoa(cpu),
		"duration_ms=" + strconv.FormatInt(max(d.Milliseconds(), 1), 10),
	})
	if err != nil {
		return 0, err
	}
	if out.Seconds <= 0 {
		return 0, fmt.Errorf("memcpy reference: no time measured")
	}
	return float64(out.Copies) * float64(size) / out.Seconds / 1e9, nil
}

// runCRing runs the compiled ring with args and decodes its output.
func runCRing(ctx context.Context, env Env, args []string) (cRingOutput, error) {
	bin, err := buildCRing(ctx, env)
	if err != nil {
		return cRingOutput{}, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var out cRingOutput
	if stdout.Len() == 0 && runErr != nil {
		// Killed before it could say anything: by its own watchdog
		// (SIGALRM) or by ctx.
		return out, fmt.Errorf("c ring %v: %w; stderr %q", args, runErr, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return out, fmt.Errorf("c ring %v: %w; output %q, stderr %q", args, errors.Join(runErr, err), stdout.String(), stderr.String())
	}
	if out.Error != "" || runErr != nil {
		return out, fmt.Errorf("c ring %v: %s: %w", args, out.Error, runErr)
	}
	return out, nil
}

// buildCRing compiles ring.c with env.CC unless a binary of the same source
// is in the cache, and returns the binary's path.
func buildCRing(ctx context.Context, env Env) (string, error) {
	return buildCached(env, "cring", sha256.Sum256(cring.Source), func(tmp string) (string, error) {
		cc, err := lookCC(env, "the C ring")
		if err != nil {
			return "", err
		}
		src := filepath.Join(tmp, "ring.c")
		if err := os.WriteFile(src, cring.Source, 0o644); err != nil {
			return "", fmt.Errorf("write ring.c: %w", err)
		}
		out := filepath.Join(tmp, "cring")
		cmd := exec.CommandContext(ctx, cc, "-O2", "-std=gnu11", "-Wall", "-o", out, src)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("compile C ring with %s: %w\n%s", cc, err, msg)
		}
		return out, nil
	})
}
