package scan

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Limiter is a token bucket: tokens flow in at a rate per second up to
// burst, and each probe takes one. The clock is passed in, so it is
// deterministic and tests need no sleeps; it starts no goroutines, does
// not allocate and is safe for concurrent use (the sender reserves, an
// adaptive controller may SetRate).
type Limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; +Inf: no limit
	burst  float64
	tokens float64
	last   time.Time // when tokens was last brought up to date; zero: never
}

// NewLimiter returns a Limiter with a full bucket of burst tokens (at least
// one) that refills at rate tokens per second. rate may be math.Inf(1) for
// no limit; it panics if rate is not positive.
func NewLimiter(rate float64, burst int) *Limiter {
	checkRate(rate)
	b := float64(max(burst, 1))
	return &Limiter{rate: rate, burst: b, tokens: b}
}

func checkRate(rate float64) {
	if !(rate > 0) {
		panic(fmt.Sprintf("scan: limiter rate %v must be positive", rate))
	}
}

// Reserve takes up to n of the tokens available at now and returns how
// many it took. When it took none (and n > 0), wait is how long after now
// one token will be available, at least 1ns; otherwise wait is 0. A now
// earlier than a previous call's adds no tokens.
func (l *Limiter) Reserve(now time.Time, n int) (granted int, wait time.Duration) {
	if n <= 0 {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if math.IsInf(l.rate, 1) {
		l.last = now
		return n, 0
	}
	l.advance(now)
	if l.tokens >= 1 {
		granted = int(min(math.Floor(l.tokens), float64(n)))
		l.tokens -= float64(granted)
		return granted, 0
	}
	ns := math.Ceil((1 - l.tokens) / l.rate * 1e9)
	switch {
	case ns >= math.MaxInt64: // a rate below one token per 292 years
		wait = math.MaxInt64
	case ns < 1:
		wait = 1
	default:
		wait = time.Duration(ns)
	}
	return 0, wait
}

// advance adds the tokens that flowed in between l.last and now.
func (l *Limiter) advance(now time.Time) {
	if l.last.IsZero() {
		l.last = now
		return
	}
	d := now.Sub(l.last)
	if d <= 0 {
		return
	}
	l.last = now
	l.tokens = min(l.burst, l.tokens+d.Seconds()*l.rate)
}

// SetRate changes the refill rate for the time from the last Reserve on
// (the Limiter does not know the current time). It panics if rate is not
// positive; math.Inf(1) means no limit.
func (l *Limiter) SetRate(rate float64) {
	checkRate(rate)
	l.mu.Lock()
	defer l.mu.Unlock()
	if math.IsInf(l.rate, 1) {
		// Unlimited until now: start the new rate with a full bucket.
		l.tokens = l.burst
	}
	l.rate = rate
}

// SetBurst changes the bucket size (at least one token); the tokens in
// the bucket stay, up to the new size.
func (l *Limiter) SetBurst(burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.burst = float64(max(burst, 1))
	l.tokens = min(l.tokens, l.burst)
}

// Rate returns the refill rate in tokens per second.
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}

// Burst returns the bucket size.
func (l *Limiter) Burst() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.burst)
}
