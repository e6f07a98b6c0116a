package bootstrap

import (
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// RetryBackoff returns the pacing of Run's retries of the CSR create while
// the API server is unreachable or asks to try later (429, 5xx): a copy, to
// Step through RetryDelay. It is exported, with RetryDelay, so that fleet
// simulations (bench/storm) run the real policy instead of a transcription
// of it.
func RetryBackoff() wait.Backoff { return retryBackoff }

// RetryDelay returns how long Run waits before creating the CSR again after
// a failed attempt, and steps b (a copy of RetryBackoff). after is the
// Retry-After of the refusal, 0 if there was none; r, in [0, 1), is a
// uniform random draw.
//
// Without Retry-After the wait is b's next step: quick at first (a
// restarting API server is back in seconds), then at most every 30 s. With
// it, the server has refused this create for a while already: client-go
// retries a 429 or 5xx that carries Retry-After by itself, after exactly
// that long, up to 10 times, before the error reaches Run. Coming back
// after Retry-After again, even with a little jitter, keeps a throttled
// fleet in step and the server saturated; the wait is therefore Retry-After
// plus a uniformly random share of b's cap (full jitter over 30 s), and at
// least b's step. In bench/storm (10,000 nodes powered on within a minute
// against a server that accepts 100 creates/s) this halves the peak of
// creates sent compared with Retry-After plus 0–20%, and brings it below
// the kubelet's, which exits and is restarted 10 s later (BENCHMARKS.md).
func RetryDelay(b *wait.Backoff, after time.Duration, r float64) time.Duration {
	d := b.Step()
	if after <= 0 {
		return d
	}
	r = min(max(r, 0), 1)
	return max(d, after+time.Duration(r*float64(retryBackoff.Cap)))
}
