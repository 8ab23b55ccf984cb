// Package projectedvolume writes files the way the kubelet writes a
// downward-API, ConfigMap or Secret volume: each version in its own hidden
// timestamped directory, published by atomically renaming a "..data" symlink
// to it, with the visible file names being symlinks through "..data". Tests
// use it to exercise the update path a sidecar sees in a pod.
package projectedvolume

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

const dataLink = "..data"

// version numbers the hidden directories; it only has to differ between
// writes into the same volume.
var version atomic.Uint64

// Write publishes files (name → contents) as the new version of the volume at
// dir: it writes them into a fresh hidden directory, makes each name a
// symlink to ..data/<name> if it is not one yet, swaps ..data to the new
// directory with a rename, and removes the previous version's directory.
func Write(dir string, files map[string][]byte) error {
	prev, _ := os.Readlink(filepath.Join(dir, dataLink))
	ts := "..v" + strconv.FormatUint(version.Add(1), 10) + "_" + strconv.Itoa(os.Getpid())
	if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
		return fmt.Errorf("create version directory: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(ts, tmp); err != nil {
		return fmt.Errorf("link new version: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		return fmt.Errorf("publish new version: %w", err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(dataLink, name), link); err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
	}
	if prev != "" && prev != ts {
		if err := os.RemoveAll(filepath.Join(dir, prev)); err != nil {
			return fmt.Errorf("remove previous version: %w", err)
		}
	}
	return nil
}
