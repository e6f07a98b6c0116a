package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// scraper reads apiserver_request_total from the API server's /metrics.
type scraper struct{ client kubernetes.Interface }

func newScraper(c *testcluster.Cluster) (*scraper, error) {
	client, err := c.AdminClient()
	if err != nil {
		return nil, err
	}
	return &scraper{client: client}, nil
}

// scrape returns apiserver_request_total summed by "VERB resource".
func (s *scraper) scrape(ctx context.Context) (map[string]float64, error) {
	raw, err := s.client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping /metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %q: %w", line, err)
		}
		labels := parseLabels(line[len("apiserver_request_total{"):end])
		key := labels["verb"] + " " + labels["resource"]
		switch sub := labels["subresource"]; {
		case labels["resource"] == "":
			key = labels["verb"] + " " + sub // a non-resource path such as /healthz
		case sub != "":
			key += "/" + sub
		}
		out[key] += v
	}
	return out, nil
}

func parseLabels(s string) map[string]string {
	labels := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			labels[k] = strings.Trim(v, `"`)
		}
	}
	return labels
}

func diff(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

func keys(samples map[string][]sample) []string {
	set := map[string]bool{}
	for _, ss := range samples {
		for _, s := range ss {
			for k := range s.requests {
				set[k] = true
			}
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
