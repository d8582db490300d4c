package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile sits in the data directory; its content is the holder's pid, for the message below.
const lockFile = ".ferretdb.lock"

// heldLock keeps the locked file reachable: an unreachable *os.File is closed by its finalizer,
// which would drop the lock.
var heldLock *os.File

// lockDataDir takes an exclusive lock on the data directory for the life of
// the process (the kernel drops it when the process ends, however it ends), or
// says which process holds it: typically a FerretDB left behind, stopped, by an
// earlier run.
func lockDataDir(dir string) error {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return fmt.Errorf("data dir %s is in use by another FerretDB (pid %s); stop that process first",
			dir, strings.TrimSpace(string(holder)))
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	heldLock = f
	return nil
}
