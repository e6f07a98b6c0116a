// Package apimetrics counts the requests an API server served, from its own
// apiserver_request_total metric, so that benchmarks can report API
// requests per operation.
package apimetrics

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// Counts maps "VERB resource[/subresource]" (or "VERB /path" for
// non-resource requests) to a number of requests.
type Counts map[string]float64

// Scrape reads the API server's /metrics (the client must be allowed to:
// an admin) and sums apiserver_request_total by verb and resource.
func Scrape(ctx context.Context, client kubernetes.Interface) (Counts, error) {
	raw, err := client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping the API server's /metrics: %w", err)
	}
	return Parse(string(raw))
}

// Parse sums the apiserver_request_total samples of a Prometheus text
// exposition by verb and resource.
func Parse(text string) (Counts, error) {
	out := Counts{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			return nil, fmt.Errorf("parsing %q: no closing brace", line)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[end+1:]), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %q: %w", line, err)
		}
		out[key(labels(rest[:end]))] += v
	}
	return out, nil
}

func labels(s string) map[string]string {
	l := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			l[k] = strings.Trim(v, `"`)
		}
	}
	return l
}

func key(l map[string]string) string {
	switch {
	case l["resource"] == "":
		return l["verb"] + " " + l["subresource"] // a non-resource path such as /healthz
	case l["subresource"] != "":
		return l["verb"] + " " + l["resource"] + "/" + l["subresource"]
	}
	return l["verb"] + " " + l["resource"]
}

// Sub returns the positive differences c - before.
func (c Counts) Sub(before Counts) Counts {
	d := Counts{}
	for k, v := range c {
		if x := v - before[k]; x > 0 {
			d[k] = x
		}
	}
	return d
}

// Total is the sum of all counts.
func (c Counts) Total() float64 {
	var t float64
	for _, v := range c {
		t += v
	}
	return t
}

// Keys returns the keys of c, sorted.
func (c Counts) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
