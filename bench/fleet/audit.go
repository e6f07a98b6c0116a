package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
)

// auditPolicy logs every request once, when its answer is complete, with
// its metadata only: who, what, and the answer's code. The API server's
// request metrics have no user label; the audit log tells the nodes'
// requests from the approvers'.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
`

// Who made a request, by the audit log's user.
const (
	byNodes    = "nodes"    // the bootstrap token the fleet shares
	byApprover = "approver" // tlsboot approver or kube-controller-manager
	byOther    = "other"    // the API server itself, the benchmark
)

// auditEvent is the part of an audit.k8s.io/v1 Event the benchmark reads.
type auditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	UserAgent string `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// requests counts requests by who made them, then by "verb what code".
type requests map[string]map[string]float64

// readAudit reads the audit log at path from offset and counts its
// completed requests.
func readAudit(path string, offset int64) (requests, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return parseAudit(f)
}

func parseAudit(r io.Reader) (requests, error) {
	out := requests{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var ev auditEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, fmt.Errorf("parsing audit event %.80q: %w", line, err)
		}
		if ev.Stage != "ResponseComplete" && ev.Stage != "Panic" {
			continue
		}
		who := whoMade(ev.User.Username)
		if out[who] == nil {
			out[who] = map[string]float64{}
		}
		out[who][requestKey(ev)]++
	}
	return out, sc.Err()
}

func whoMade(user string) string {
	switch {
	case strings.HasPrefix(user, "system:bootstrap:"):
		return byNodes
	case user == "system:kube-controller-manager", user == "tlsboot-admin": // the approver runs as the admin
		return byApprover
	}
	return byOther
}

// requestKey is "VERB resource[/subresource] code"; a list or watch of
// CSRs says whether it was for one name or for all, and a non-resource
// request names its path.
func requestKey(ev auditEvent) string {
	what := ""
	if ev.ObjectRef != nil {
		what = ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			what += "/" + ev.ObjectRef.Subresource
		}
	}
	u, err := url.Parse(ev.RequestURI)
	if what == "" && err == nil {
		what = u.Path
	}
	if (ev.Verb == "list" || ev.Verb == "watch") && err == nil {
		if strings.HasPrefix(u.Query().Get("fieldSelector"), "metadata.name=") {
			what += " (one name)"
		} else {
			what += " (all)"
		}
	}
	code := 0
	if ev.ResponseStatus != nil {
		code = ev.ResponseStatus.Code
	}
	return fmt.Sprintf("%s %s %d", strings.ToUpper(ev.Verb), what, code)
}

// total is the number of requests in c.
func total(c map[string]float64) float64 {
	var t float64
	for _, v := range c {
		t += v
	}
	return t
}

// withCode sums the requests in c answered with code.
func withCode(c map[string]float64, code int) float64 {
	var t float64
	suffix := fmt.Sprintf(" %d", code)
	for k, v := range c {
		if strings.HasSuffix(k, suffix) {
			t += v
		}
	}
	return t
}

func sortedKeys(c map[string]float64) []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
