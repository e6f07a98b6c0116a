package testcluster

import (
	"context"
	"testing"
	"time"
)

// StartT starts a cluster for a test and stops it in t.Cleanup, printing the
// components' logs when the test failed.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting test cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs:%s", c.Logs(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping test cluster: %v", err)
		}
	})
	return c
}
