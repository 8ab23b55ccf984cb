package mqconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// unixPair returns the two ends of a connected Unix stream socket.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.UnixConn, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	a, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// frame appends the header of a test frame: [u32 appender][u32 seq][u32
// body length]; body makes the body, a pattern of appender and seq.
func frame(out []byte, who, seq uint32, bodyLen int) []byte {
	out = binary.LittleEndian.AppendUint32(out, who)
	out = binary.LittleEndian.AppendUint32(out, seq)
	return binary.LittleEndian.AppendUint32(out, uint32(bodyLen))
}

func body(who, seq uint32, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(who*31 + seq + uint32(i))
	}
	return b
}

// Frames appended by several goroutines, small ones copied, large ones by
// reference and some larger than a chunk, reach the peer whole and in each
// goroutine's order, through a reader slow enough that writes block and
// come back partial; afterwards the writer keeps no more than its idle
// chunks.
func TestWriterDeliversEveryFrameInOrder(t *testing.T) {
	a, b := unixPair(t)
	if err := a.SetWriteBuffer(8 << 10); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(a, 0)
	runErr := make(chan error, 1)
	go w.Run(func(err error) { runErr <- err })

	const appenders, perAppender = 4, 300
	sizes := []int{0, 17, 600, 4 << 10, 9 << 10, MaxKeptBuffer + 5}
	want := make([][]byte, appenders) // what each appender sent, in order
	var wg sync.WaitGroup
	for who := range uint32(appenders) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sent []byte
			for seq := range uint32(perAppender) {
				n := sizes[int(seq)%len(sizes)]
				bd := body(who, seq, n)
				if n >= 4<<10 && seq%2 == 0 {
					out, _, ok := w.Lock(12)
					if !ok {
						t.Error("writer closed")
						return
					}
					w.UnlockRef(frame(out, who, seq, n), bd)
				} else {
					out, mark, ok := w.Lock(12 + n)
					if !ok {
						t.Error("writer closed")
						return
					}
					w.Unlock(append(frame(out, who, seq, n), bd...), mark)
				}
				sent = append(frame(sent, who, seq, n), bd...)
				w.Flush()
			}
			want[who] = sent
		}()
	}

	got := make([][]byte, appenders)
	total := 0
	for seq := range perAppender {
		total += appenders * (12 + sizes[seq%len(sizes)])
	}
	readDone := make(chan error, 1)
	go func() {
		r := io.LimitReader(b, int64(total))
		hdr := make([]byte, 12)
		for {
			if _, err := io.ReadFull(r, hdr); err != nil {
				if err == io.EOF {
					err = nil
				}
				readDone <- err
				return
			}
			who := binary.LittleEndian.Uint32(hdr)
			n := binary.LittleEndian.Uint32(hdr[8:])
			if who >= appenders {
				readDone <- io.ErrUnexpectedEOF
				return
			}
			bd := make([]byte, n)
			if _, err := io.ReadFull(r, bd); err != nil {
				readDone <- err
				return
			}
			got[who] = append(append(got[who], hdr...), bd...)
			time.Sleep(time.Microsecond) // a slow reader: the socket fills
		}
	}()
	wg.Wait()
	select {
	case err := <-readDone:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-runErr:
		t.Fatalf("writer failed: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the reader did not receive everything within a minute")
	}
	for who := range appenders {
		if !bytes.Equal(got[who], want[who]) {
			t.Errorf("appender %d: received %d bytes, not the %d sent in order", who, len(got[who]), len(want[who]))
		}
	}
	if n, dead := w.Backlog(); n != 0 || dead {
		t.Errorf("Backlog() = %d, %v after everything was read; want 0, false", n, dead)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		kept := len(w.free)
		w.mu.Unlock()
		if kept <= idleChunks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an idle writer keeps %d spare chunks, want at most %d", kept, idleChunks)
		}
		time.Sleep(time.Millisecond)
	}
	w.Close()
	<-w.Done()
}

// A write that blocked once (the peer was not reading) bounds only itself:
// a frame written after its timeout has long passed still goes out.
func TestWriterTimeoutBoundsOnlyTheBlockedWrite(t *testing.T) {
	a, b := unixPair(t)
	if err := a.SetWriteBuffer(8 << 10); err != nil {
		t.Fatal(err)
	}
	const timeout = 200 * time.Millisecond
	w := NewWriter(a, timeout)
	runErr := make(chan error, 1)
	go w.Run(func(err error) { runErr <- err })

	big := body(1, 1, 1<<20) // far more than the socket buffers: Run blocks
	out, _, _ := w.Lock(12)
	w.UnlockRef(frame(out, 1, 1, len(big)), big)
	w.Flush() // writes at most what the socket buffers: Run arms the deadline
	got := make([]byte, 12+len(big))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[12:], big) {
		t.Fatal("the blocked frame arrived damaged")
	}

	time.Sleep(2 * timeout) // not synchronization: the old deadline must pass
	out, mark, ok := w.Lock(12)
	if !ok {
		t.Fatalf("writer closed after a write that succeeded: %v", <-runErr)
	}
	w.Unlock(frame(out, 2, 2, 0), mark)
	w.Flush()
	if err := b.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, got[:12]); err != nil {
		select {
		case werr := <-runErr:
			t.Fatalf("the frame after the timeout was not written: %v", werr)
		default:
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got[:12], frame(nil, 2, 2, 0)) {
		t.Fatalf("received %x, want the second frame", got[:12])
	}
	w.Close()
	<-w.Done()
	select {
	case err := <-runErr:
		t.Fatalf("writer failed: %v", err)
	default:
	}
}

// Lock(room) for a frame larger than a chunk that then appends nothing
// leaves no large buffer pinned once the outbox is taken.
func TestWriterDropsAnUnusedLargeBuffer(t *testing.T) {
	a, _ := unixPair(t)
	w := NewWriter(a, 0)
	out, mark, _ := w.Lock(4 * MaxKeptBuffer)
	w.Unlock(out, mark) // nothing appended
	w.writeMu.Lock()
	if w.take() {
		t.Error("take() found something to write in an empty outbox")
	}
	w.writeMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range append(append([][]byte{w.out}, w.free...), w.sealed...) {
		if cap(c) > MaxKeptBuffer {
			t.Fatalf("the writer keeps a %d-byte buffer, more than a chunk", cap(c))
		}
	}
}
