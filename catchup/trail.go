package catchup

import "time"

// trail computes the cursor a poller stores: not the cursor of the newest
// event read but one that trails it by the overlap window, so that the next
// pass reads the window again.
type trail struct {
	count  int           // window by count (> 0), none (< 0), or by time (0)
	window time.Duration // window by time
	start  string        // the cursor the pass started from
	marks  []mark        // events read since the stored cursor, list order
	newest time.Time     // the latest creation time read
	last   time.Time     // the creation time of the last event read
}

type mark struct {
	cursor  string
	created time.Time
}

func newTrail(start string, count int, window time.Duration) trail {
	return trail{start: start, count: count, window: window}
}

// add records that ev was read (and applied or found a duplicate).
func (t *trail) add(ev Event) {
	created := ev.Created
	if created.IsZero() {
		created = t.last
	}
	t.last = created
	if created.After(t.newest) {
		t.newest = created
	}
	cur := ev.Cursor
	if cur == "" { // a source that gives no cursor per event: stay put
		cur = t.start
		if n := len(t.marks); n > 0 {
			cur = t.marks[n-1].cursor
		}
	}
	t.marks = append(t.marks, mark{cursor: cur, created: created})
	t.trim()
}

// trim drops the marks that can no longer become the stored cursor.
func (t *trail) trim() {
	i := t.index()
	if i > 0 {
		t.start = t.marks[i-1].cursor
		t.marks = append(t.marks[:0], t.marks[i:]...)
	}
}

// index returns how many marks are behind the window: the stored cursor is
// that of the last of them (or start when none).
func (t *trail) index() int {
	n := len(t.marks)
	switch {
	case t.count < 0:
		return n
	case t.count > 0:
		return max(0, n-t.count)
	}
	edge := t.newest.Add(-t.window)
	i := 0
	for i < n && !t.marks[i].created.After(edge) {
		i++
	}
	return i
}

// cursor returns the cursor to store.
func (t *trail) cursor() string {
	if i := t.index(); i > 0 {
		return t.marks[i-1].cursor
	}
	return t.start
}

// clone returns a copy that add does not share memory with.
func (t *trail) clone() trail {
	c := *t
	c.marks = append([]mark(nil), t.marks...)
	return c
}
