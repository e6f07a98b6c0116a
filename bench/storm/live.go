package main

import (
	"errors"
	"time"
)

type liveResult struct{}

func (liveResult) markdown() string { return "" }

func runLive(n int, ttl, d time.Duration) (liveResult, error) {
	return liveResult{}, errors.New("not yet")
}
