package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestServer(t *testing.T) {
	var notReady error = errors.New("no valid client certificate on disk")
	s := &Server{Registry: NewRegistry(), Ready: func() error { return notReady }}
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	base := "http://" + l.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tests := []struct {
		path     string
		ready    error
		wantCode int
		wantBody string
	}{
		{"/healthz", notReady, 200, "ok"},
		{"/readyz", notReady, 503, "no valid client certificate"},
		{"/readyz", nil, 200, "ok"},
		{"/metrics", nil, 200, "go_goroutines"},
	}
	for _, tt := range tests {
		notReady = tt.ready
		code, body := get(tt.path)
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantBody)
		}
	}
}

func TestListenBadAddress(t *testing.T) {
	if _, err := Listen("256.0.0.1:x"); err == nil || !strings.Contains(err.Error(), "metrics address") {
		t.Fatalf("Listen = %v, want an error naming the metrics address", err)
	}
}
