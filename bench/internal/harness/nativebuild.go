package harness

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/podipc/podipc/bench/cclient"
	"github.com/podipc/podipc/bench/pyclient"
)

// Environment variables of the native-client transports.
const (
	// clientsEnv names podipc's clients/ directory (libpodipc in c/, the
	// Python package in python/). By default it is looked for above the
	// working directory and above the executable, as in the repository.
	clientsEnv = "PODIPC_BENCH_CLIENTS"
	// pythonEnv names the Python interpreter of the Python peers; default
	// python3 on $PATH.
	pythonEnv = "PODIPC_BENCH_PYTHON"
)

// findClients returns podipc's clients/ directory.
func findClients() (string, error) {
	if dir := os.Getenv(clientsEnv); dir != "" {
		if !isClientsDir(dir) {
			return "", fmt.Errorf("$%s=%s has no c/include/podipc.h", clientsEnv, dir)
		}
		return dir, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			if c := filepath.Join(dir, "clients"); isClientsDir(c) {
				return c, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("%w: podipc's clients/ directory is not above %v: run from the repository or set $%s",
		ErrUnavailable, starts, clientsEnv)
}

func isClientsDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "c", "include", "podipc.h"))
	return err == nil
}

// buildLibpodipc builds libpodipc.a and libpodipc.so from clients/c with its
// own Makefile (so with the flags it ships with), into the cache, and
// returns their directory.
func buildLibpodipc(ctx context.Context, env Env, clients string) (string, error) {
	src := filepath.Join(clients, "c")
	sum, err := hashTree(src, "Makefile", "include", "src")
	if err != nil {
		return "", fmt.Errorf("libpodipc sources: %w", err)
	}
	return buildCached(env, "libpodipc", sum, func(tmp string) (string, error) {
		mk, err := lookTool("make", "libpodipc", "install make")
		if err != nil {
			return "", err
		}
		cc, err := lookCC(env, "libpodipc")
		if err != nil {
			return "", err
		}
		out := filepath.Join(tmp, "lib")
		cmd := exec.CommandContext(ctx, mk, "-s", "-C", src, "BUILD="+out, "CC="+cc, "CFLAGS=-O2",
			filepath.Join(out, "libpodipc.a"), filepath.Join(out, "libpodipc.so"))
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build libpodipc (make -C %s): %w\n%s", src, err, msg)
		}
		for _, objs := range []string{"obj-static", "obj-shared"} {
			if err := os.RemoveAll(filepath.Join(out, objs)); err != nil {
				return "", err
			}
		}
		return out, nil
	})
}

// buildCPeer compiles bench/cclient/peer.c against libpodipc.a in lib, as a
// static binary, and returns its path.
func buildCPeer(ctx context.Context, env Env, clients, lib string) (string, error) {
	sum := sha256.Sum256(append([]byte(filepath.Base(lib)+"\x00"), cclient.Source...))
	return buildCached(env, "cpeer", sum, func(tmp string) (string, error) {
		cc, err := lookCC(env, "the C client peer")
		if err != nil {
			return "", err
		}
		src := filepath.Join(tmp, "peer.c")
		if err := os.WriteFile(src, cclient.Source, 0o644); err != nil {
			return "", fmt.Errorf("write peer.c: %w", err)
		}
		out := filepath.Join(tmp, "cpeer")
		cmd := exec.CommandContext(ctx, cc, "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
			"-I", filepath.Join(clients, "c", "include"), "-static", "-o", out, src,
			filepath.Join(lib, "libpodipc.a"), "-lpthread")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("compile the C client peer with %s: %w\n%s", cc, err, msg)
		}
		return out, nil
	})
}

// findPython returns the interpreter of the Python peers, $PODIPC_BENCH_PYTHON
// or python3, after checking that clients has the podipc package.
func findPython(clients string) (string, error) {
	name := os.Getenv(pythonEnv)
	if name == "" {
		name = "python3"
	}
	py, err := lookTool(name, "the Python client peers",
		"install python3, 3.11 or later, or name an interpreter with $"+pythonEnv)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(clients, "python", "podipc", "__init__.py")); err != nil {
		return "", fmt.Errorf("the podipc Python package: %w", err)
	}
	return py, nil
}

// pythonCommand is how to run bench/pyclient/peer.py with the interpreter
// py, the podipc package of clients/python and the libpodipc.so in lib.
func pythonCommand(env Env, py, clients, lib string) (nativeCmd, error) {
	script, err := buildCached(env, "pypeer", sha256.Sum256(pyclient.Source), func(tmp string) (string, error) {
		out := filepath.Join(tmp, "peer.py")
		return out, os.WriteFile(out, pyclient.Source, 0o644)
	})
	if err != nil {
		return nativeCmd{}, err
	}
	// -B: no bytecode files written into the source tree's package.
	return nativeCmd{
		argv: []string{py, "-B", script},
		env: []string{"PYTHONPATH=" + filepath.Join(clients, "python"),
			"PODIPC_LIBRARY=" + filepath.Join(lib, "libpodipc.so")},
	}, nil
}

// hashTree digests the regular files under the named entries of root (files
// or directories), their paths and contents, in a fixed order.
func hashTree(root string, entries ...string) ([32]byte, error) {
	var files []string
	for _, e := range entries {
		err := filepath.WalkDir(filepath.Join(root, e), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			return [32]byte{}, err
		}
	}
	slices.Sort(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return [32]byte{}, err
		}
		rel, err := filepath.Rel(root, f)
		if err != nil {
			return [32]byte{}, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}
