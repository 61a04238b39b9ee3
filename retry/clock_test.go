package retry_test

import (
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/retry"
)

// fakeClock is a retry.Clock whose time moves only when told. In auto mode a
// timer made by NewTimer fires at once and moves the time forward by its
// duration, so a retry loop runs without sleeping while its waits are
// recorded; AfterFunc timers (the per-attempt timeout) fire when the time
// reaches them, whether by Advance or by an auto timer.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	timers  []*fakeTimer
	sleeps  []time.Duration
	waiting chan time.Duration // in manual mode, receives the duration of each NewTimer
}

var _ retry.Clock = (*fakeClock)(nil)

func newAutoClock() *fakeClock {
	return &fakeClock{now: time.Now(), auto: true}
}

func newManualClock() *fakeClock {
	return &fakeClock{now: time.Now(), waiting: make(chan time.Duration, 64)}
}

type fakeTimer struct {
	clk  *fakeClock
	at   time.Time
	c    chan time.Time
	f    func()
	done bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) retry.Timer {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	t := &fakeTimer{clk: c, at: c.now.Add(d), c: make(chan time.Time, 1)}
	if c.auto {
		t.done = true
		c.mu.Unlock()
		c.Advance(d)
		t.c <- c.Now()
		return t
	}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.waiting <- d
	return t
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) retry.Timer {
	c.mu.Lock()
	t := &fakeTimer{clk: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	if d <= 0 {
		c.Advance(0)
	}
	return t
}

// Advance moves the time forward by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.at.After(now):
			t.done = true
			due = append(due, t)
		default:
			kept = append(kept, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, t := range due {
		if t.f != nil {
			t.f()
		} else {
			t.c <- now
		}
	}
}

// Sleeps returns the durations of the timers made so far.
func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}
