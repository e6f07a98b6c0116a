package bootstrap

import "k8s.io/apimachinery/pkg/util/wait"

// RetryBackoff returns the pacing of Run's retries of the CSR create while
// the API server is unreachable or asks to try later (429, 5xx), after
// client-go's own Retry-After retries of that request gave up. It is a copy:
// Step it to get the successive delays (jittered with math/rand's global
// source). It exists so that fleet simulations (bench/storm) model the
// real policy instead of a transcription of it.
func RetryBackoff() wait.Backoff { return retryBackoff }
