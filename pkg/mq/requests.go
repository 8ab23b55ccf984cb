package mq

// requestTable holds the confirmations that wait for the broker's answers,
// by request id. Ids are handed out in sequence, so a ring indexed by an
// id's low bits finds each one without hashing: an id whose slot is still
// taken by an older request (a send held by a full queue) is skipped, and
// the ring doubles when it is full. Live ids never share their low bits, so
// they do not share a slot in the doubled ring either. The Client's mutex
// guards it.
type requestTable struct {
	slots []*Confirmation // len is a power of two
	last  uint32          // the last id handed out; 0 is never one
	n     int
}

// add assigns cf a request id and holds it until take or remove.
func (t *requestTable) add(cf *Confirmation) uint32 {
	if t.n == len(t.slots) {
		t.grow()
	}
	mask := uint32(len(t.slots) - 1)
	for {
		t.last++
		if t.last != 0 && t.slots[t.last&mask] == nil {
			break
		}
	}
	cf.req = t.last
	t.slots[t.last&mask] = cf
	t.n++
	return t.last
}

func (t *requestTable) grow() {
	old := t.slots
	t.slots = make([]*Confirmation, max(64, 2*len(old)))
	mask := uint32(len(t.slots) - 1)
	for _, cf := range old {
		if cf != nil {
			t.slots[cf.req&mask] = cf
		}
	}
}

// take removes and returns the confirmation waiting for req, if any.
func (t *requestTable) take(req uint32) *Confirmation {
	if t.n == 0 {
		return nil
	}
	i := req & uint32(len(t.slots)-1)
	cf := t.slots[i]
	if cf == nil || cf.req != req {
		return nil
	}
	t.slots[i] = nil
	t.n--
	return cf
}

// remove forgets cf if it is still waiting.
func (t *requestTable) remove(cf *Confirmation) {
	if t.n == 0 {
		return
	}
	if i := cf.req & uint32(len(t.slots)-1); t.slots[i] == cf {
		t.slots[i] = nil
		t.n--
	}
}

// drain removes and returns every waiting confirmation.
func (t *requestTable) drain() []*Confirmation {
	out := make([]*Confirmation, 0, t.n)
	for i, cf := range t.slots {
		if cf != nil {
			out = append(out, cf)
			t.slots[i] = nil
		}
	}
	t.n = 0
	return out
}
