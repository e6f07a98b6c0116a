package main

import "sort"

// keys lists every request kind seen in any sample, sorted.
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
