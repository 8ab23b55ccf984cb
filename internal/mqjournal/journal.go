package mqjournal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/podipc/podipc/internal/regularfile"
)

// Options tune a journal.
type Options struct {
	// MaxRecord bounds the length of one record; longer ones are corrupt.
	MaxRecord int
	// CompactMinBytes is the file size below which the journal is never
	// compacted. Zero means 1 MiB.
	CompactMinBytes int64
}

// Recovery describes what Open found.
type Recovery struct {
	// Records is the number of valid records replayed.
	Records int
	// TornBytes is the size of the invalid tail that was cut off.
	TornBytes int64
	// TailErr is why the tail was cut off, if it was.
	TailErr error
}

// Journal appends records to one file. Appends are buffered; Sync makes them
// durable (written to the file, which on a tmpfs survives a process crash).
// It is safe for concurrent use.
type Journal struct {
	path string
	opts Options

	mu        sync.Mutex
	f         *os.File
	buf       []byte
	fileSize  int64 // bytes in the file plus bytes buffered
	liveBytes int64 // bytes of ENQUEUE records not yet removed
	appended  uint64
	written   uint64
	lostUpTo  uint64
	lostErr   error
	broken    bool
	closed    bool
}

// ErrClosed is returned by operations on a closed journal.
var ErrClosed = errors.New("journal closed")

// ErrUntrusted is returned by Open for a journal that another user than the
// process's could have written, which it does not replay: a symbolic link
// (to /dev/zero, say), a FIFO or anything but a regular file, a file owned by
// another user, or one its group or others can write.
var ErrUntrusted = errors.New("untrusted journal")

// Open opens or creates the journal at path and replays it, returning the
// messages still live in the order they were enqueued. A torn or corrupt tail
// is cut off and reported in Recovery.
func Open(path string, opts Options) (*Journal, []Message, Recovery, error) {
	if opts.MaxRecord <= 0 {
		return nil, nil, Recovery{}, errors.New("mqjournal: MaxRecord must be positive")
	}
	if opts.CompactMinBytes <= 0 {
		opts.CompactMinBytes = 1 << 20
	}
	// The journal lies on the pod's tmpfs, which every container can write:
	// a symbolic link or a FIFO planted there is refused, not followed, and
	// so is a file that another user could have forged.
	data, err := regularfile.ReadPrivateFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		if errors.Is(err, regularfile.ErrNotRegular) || errors.Is(err, regularfile.ErrNotPrivate) {
			return nil, nil, Recovery{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
		return nil, nil, Recovery{}, fmt.Errorf("read journal: %w", err)
	}
	live, good, version, rec, err := replay(data, opts.MaxRecord)
	if err != nil {
		return nil, nil, Recovery{}, fmt.Errorf("journal %s: %w", path, err)
	}
	j := &Journal{path: path, opts: opts}
	if good == 0 || version != fileVersion {
		// New, empty, torn before the header was complete, or of an older
		// version: (re)write it in the current format.
		if err := j.rewriteLocked(live); err != nil {
			return nil, nil, Recovery{}, err
		}
		return j, live, rec, nil
	}
	f, err := regularfile.OpenPrivate(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, Recovery{}, fmt.Errorf("open journal: %w", err)
	}
	if int64(len(data)) > good {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, nil, Recovery{}, fmt.Errorf("cut torn journal tail: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, Recovery{}, fmt.Errorf("seek journal: %w", err)
	}
	j.f = f
	j.fileSize = good
	for _, m := range live {
		j.liveBytes += int64(EnqueueSize(len(m.Body)))
	}
	return j, live, rec, nil
}

// replay decodes data and returns the live messages (bodies copied), the
// length of the valid prefix, the file's format version, and what it found.
func replay(data []byte, maxRecord int) ([]Message, int64, uint32, Recovery, error) {
	var rec Recovery
	version, err := headerVersion(data)
	if err != nil {
		return nil, 0, 0, rec, err
	}
	if version == 0 {
		rec.TornBytes = int64(len(data))
		return nil, 0, 0, rec, nil
	}
	var order []Message
	index := map[uint64]int{}
	off := headerSize
	for off < len(data) {
		r, n, err := DecodeRecord(data[off:], maxRecord)
		if err != nil {
			rec.TornBytes = int64(len(data) - off)
			rec.TailErr = err
			break
		}
		rec.Records++
		off += n
		switch r.Type {
		case RecordEnqueue:
			if i, ok := index[r.Message.ID]; ok {
				order[i] = r.Message
				continue
			}
			index[r.Message.ID] = len(order)
			order = append(order, r.Message)
		case RecordDelivered:
			if i, ok := index[r.Message.ID]; ok {
				order[i].Deliveries = max(order[i].Deliveries, r.Message.Deliveries)
			}
		case RecordRemove:
			if i, ok := index[r.Message.ID]; ok {
				order[i].Body = nil
				order[i].ID = 0
				delete(index, r.Message.ID)
			}
		}
	}
	live := slices.DeleteFunc(order, func(m Message) bool { return m.ID == 0 })
	for i := range live {
		live[i].Body = slices.Clone(live[i].Body)
		if live[i].Body == nil {
			live[i].Body = []byte{}
		}
	}
	return live, int64(off), version, rec, nil
}

// AppendEnqueue buffers an ENQUEUE record and returns its sequence number for Sync.
func (j *Journal) AppendEnqueue(m Message) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := len(j.buf)
	j.buf = AppendEnqueue(j.buf, m)
	j.fileSize += int64(len(j.buf) - n)
	j.liveBytes += int64(len(j.buf) - n)
	j.appended++
	return j.appended
}

// AppendDelivered buffers a DELIVERED record: message id has been delivered
// deliveries times. It returns the record's sequence number for Sync.
func (j *Journal) AppendDelivered(id uint64, deliveries uint32) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := len(j.buf)
	j.buf = AppendDelivered(j.buf, id, deliveries)
	j.fileSize += int64(len(j.buf) - n) // dead once the next one is written
	j.appended++
	return j.appended
}

// AppendRemove buffers a REMOVE record for a message whose body had bodyLen bytes.
func (j *Journal) AppendRemove(id uint64, bodyLen int) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := len(j.buf)
	j.buf = AppendRemove(j.buf, id)
	j.fileSize += int64(len(j.buf) - n)
	j.liveBytes -= int64(EnqueueSize(bodyLen))
	j.appended++
	return j.appended
}

// Sync writes buffered records so that the record with sequence seq is in the
// file. It reports the write error that lost seq, if one did.
func (j *Journal) Sync(seq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if seq <= j.written {
		return nil
	}
	if seq <= j.lostUpTo {
		return j.lostErr
	}
	if j.closed {
		return ErrClosed
	}
	return j.flushLocked()
}

// Flush writes every buffered record.
func (j *Journal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	return j.flushLocked()
}

func (j *Journal) flushLocked() error {
	if len(j.buf) == 0 {
		j.written = j.appended
		return nil
	}
	before := j.fileSize - int64(len(j.buf))
	_, err := j.f.Write(j.buf)
	j.buf = j.buf[:0]
	if cap(j.buf) > 4<<20 {
		j.buf = nil
	}
	if err != nil {
		// Cut whatever part of the batch reached the file so the next
		// append does not follow a torn record; the batch is lost and the
		// owner is told to rewrite the journal from memory.
		j.fileSize = before
		j.lostUpTo, j.lostErr = j.appended, fmt.Errorf("write journal %s: %w", j.path, err)
		j.broken = true
		if terr := j.f.Truncate(before); terr == nil {
			_, _ = j.f.Seek(before, io.SeekStart)
		}
		return j.lostErr
	}
	j.written = j.appended
	return nil
}

// Broken reports that a write failed and the file no longer reflects the
// appended records; the owner should call Rewrite.
func (j *Journal) Broken() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.broken
}

// ShouldCompact reports that the file is large and mostly dead.
func (j *Journal) ShouldCompact() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fileSize >= j.opts.CompactMinBytes && j.liveBytes*2 < j.fileSize
}

// Size returns the file size including buffered records.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fileSize
}

// Rewrite replaces the file with one holding an ENQUEUE record for each of
// the live messages, followed by a DELIVERED record for those delivered
// before (compaction). Every record appended before it is durable
// once it returns nil.
func (j *Journal) Rewrite(live []Message) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	return j.rewriteLocked(live)
}

func (j *Journal) rewriteLocked(live []Message) error {
	tmp := j.path + ".tmp"
	f, err := regularfile.OpenPrivate(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create journal: %w", err)
	}
	buf := appendHeader(make([]byte, 0, 64<<10))
	var liveBytes int64
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("rewrite journal %s: %w", j.path, err)
	}
	total := int64(0)
	for _, m := range live {
		n := len(buf)
		buf = AppendEnqueue(buf, m)
		liveBytes += int64(len(buf) - n)
		if m.Deliveries > 0 {
			buf = AppendDelivered(buf, m.ID, m.Deliveries)
		}
		if len(buf) >= 64<<10 {
			if _, err := f.Write(buf); err != nil {
				return fail(err)
			}
			total += int64(len(buf))
			buf = buf[:0]
		}
	}
	if _, err := f.Write(buf); err != nil {
		return fail(err)
	}
	total += int64(len(buf))
	if err := os.Rename(tmp, j.path); err != nil {
		return fail(err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = f
	j.buf = j.buf[:0]
	j.fileSize = total
	j.liveBytes = liveBytes
	j.written = j.appended
	j.broken = false
	return nil
}

// Close writes buffered records and closes the file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	err := j.flushLocked()
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close journal: %w", cerr)
	}
	return err
}

// Delete closes the journal and removes its file.
func (j *Journal) Delete() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.closed {
		j.closed = true
		j.f.Close()
	}
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal: %w", err)
	}
	return nil
}
