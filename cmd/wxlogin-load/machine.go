package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Machine is what else was going on: the development machine is shared, so
// every report says how busy it and its disk were.
type Machine struct {
	LoadStart string      `json:"loadavg_start"`
	LoadEnd   string      `json:"loadavg_end"`
	Fsync     Percentiles `json:"fdatasync"`        // 4 KiB rewrite + fdatasync in the database's directory
	FsyncGrow Percentiles `json:"fdatasync_append"` // 4 KiB append + fdatasync: new blocks, an ext4 journal commit
	ToolCPU   float64     `json:"tool_cpu_s"`
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// fsyncProbe times n small durable writes in dir: bbolt pays two of these
// per commit, so they are the floor of a durable scan's latency.
// With grow, each write extends the file, as a growing bbolt file does.
func fsyncProbe(dir string, n int, grow bool) Percentiles {
	var l latencies
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return Percentiles{}
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range n {
		t0 := time.Now()
		off := int64(i%16) * 4096
		if grow {
			off = int64(i) * 4096
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return Percentiles{}
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return Percentiles{}
		}
		l.add(time.Since(t0))
	}
	return l.percentiles()
}

func toolCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// machineStart begins a run's record; finish completes it.
func machineStart(dir string) (Machine, float64) {
	m := Machine{LoadStart: loadavg(), Fsync: fsyncProbe(filepath.Clean(dir), 40, false),
		FsyncGrow: fsyncProbe(filepath.Clean(dir), 40, true)}
	return m, toolCPU()
}

func (m *Machine) finish(cpu0 float64) {
	m.LoadEnd = loadavg()
	m.ToolCPU = toolCPU() - cpu0
}

func (m Machine) String() string {
	return fmt.Sprintf("machine: load average %s → %s; fdatasync p50 %.2f ms p99 %.2f ms (appending: p50 %.2f ms p99 %.2f ms); this tool used %.1f s CPU",
		m.LoadStart, m.LoadEnd, m.Fsync.P50, m.Fsync.P99, m.FsyncGrow.P50, m.FsyncGrow.P99, m.ToolCPU)
}
