package harness

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// buildCached returns the path of a helper the benchmark builds (the C ring,
// libpodipc, the client peers), kept in env.CacheDir as name-HASH where HASH
// is the start of sum, the digest of everything the helper is built from. On
// a miss, build runs in a fresh temporary directory of the cache and returns
// the path of its product there, a file or a directory, which is renamed
// into place: rename is atomic, so concurrent runs never use a partial
// product, and the first to finish wins.
func buildCached(env Env, name string, sum [32]byte, build func(tmp string) (string, error)) (string, error) {
	dst := filepath.Join(env.CacheDir, name+"-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(env.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	tmp, err := os.MkdirTemp(env.CacheDir, "."+name+"-build-")
	if err != nil {
		return "", fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	out, err := build(tmp)
	if err != nil {
		return "", err
	}
	if err := os.Rename(out, dst); err != nil {
		if _, serr := os.Stat(dst); serr == nil {
			return dst, nil // a concurrent run installed it first
		}
		return "", fmt.Errorf("install %s: %w", name, err)
	}
	return dst, nil
}

// lookTool finds the program a helper needs, or says, as ErrUnavailable,
// which one is missing for what and how to get it.
func lookTool(prog, what, hint string) (string, error) {
	path, err := exec.LookPath(prog)
	if err != nil {
		return "", fmt.Errorf("%w: no %q for %s (%s): %v", ErrUnavailable, prog, what, hint, err)
	}
	return path, nil
}

// lookCC finds the C compiler (env.CC) for what.
func lookCC(env Env, what string) (string, error) {
	return lookTool(env.CC, what, "a C compiler: install gcc, or name one with -cc or $CC")
}
