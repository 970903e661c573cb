package journal

import (
	"os"
	"syscall"
)

// fdatasync flushes a file's data and only the metadata needed to read it
// back: for a preallocated journal segment that is the data alone.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
