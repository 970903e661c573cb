package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

const (
	recordHeader = 16
	maxRecordLen = 64 << 20 // a purge of 10 000 records is ≈ 1 MB
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// SegmentPaths are the journal's two files beside the database at path.
func SegmentPaths(path string) [2]string {
	return [2]string{path + "-wal.0", path + "-wal.1"}
}

// openSegments opens (creating and zero-filling when short) both segment
// files and reads their valid records.
func openSegments(path string) (files [2]*os.File, found [2]Generation, err error) {
	for i, p := range SegmentPaths(path) {
		f, err := openSegment(p)
		if err != nil {
			closeFiles(files)
			return files, found, err
		}
		files[i] = f
		found[i], err = readSegment(io.NewSectionReader(f, 0, 1<<62))
		if err != nil {
			closeFiles(files)
			return files, found, fmt.Errorf("read journal %s: %w", p, err)
		}
	}
	return files, found, nil
}

func openSegment(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if st.Size() >= segmentPrealloc {
		return f, nil
	}
	// Zero-fill (not fallocate: an unwritten extent would still need a
	// metadata update on its first sync) and make the file's existence
	// durable too.
	zeros := make([]byte, 1<<20)
	for off := st.Size(); off < segmentPrealloc; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), segmentPrealloc-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			f.Close()
			return nil, fmt.Errorf("preallocate journal %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("preallocate journal %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

func closeFiles(files [2]*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// appendRecord appends to dst the record of payload in generation gen.
func appendRecord(dst []byte, gen uint64, payload []byte) []byte {
	var h [recordHeader]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], gen)
	crc := crc32.Update(0, crcTable, h[8:16])
	crc = crc32.Update(crc, crcTable, payload)
	binary.LittleEndian.PutUint32(h[4:], crc)
	return append(append(dst, h[:]...), payload...)
}

// readSegment reads records from the start of r while they are whole,
// their CRC matches and their generation is the first record's; the
// generation is 0 when there are none. It reads as it goes, so a 4 MB
// segment is not held in memory whole at every start. Only read errors
// other than the end of the data are returned.
func readSegment(r io.Reader) (Generation, error) {
	var g Generation
	br := bufio.NewReaderSize(r, 64<<10)
	var h [recordHeader]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return g, endOfData(err)
		}
		n := binary.LittleEndian.Uint32(h[0:])
		gen := binary.LittleEndian.Uint64(h[8:])
		if n > maxRecordLen || gen == 0 || (g.Number != 0 && gen != g.Number) {
			return g, nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return g, endOfData(err)
		}
		crc := crc32.Update(0, crcTable, h[8:16])
		if crc32.Update(crc, crcTable, payload) != binary.LittleEndian.Uint32(h[4:]) {
			return g, nil
		}
		g.Number = gen
		g.Payloads = append(g.Payloads, payload)
	}
}

// endOfData: a record cut short by the end of the file ends the segment
// like a torn one does.
func endOfData(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}
