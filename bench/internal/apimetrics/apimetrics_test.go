package apimetrics

import "testing"

func TestParseAndSub(t *testing.T) {
	before, err := Parse(`# HELP apiserver_request_total x
apiserver_request_total{code="201",component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="cluster",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/healthz",verb="GET",version=""} 1
`)
	if err != nil {
		t.Fatal(err)
	}
	after, err := Parse(`apiserver_request_total{code="201",component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="cluster",subresource="",verb="POST",version="v1"} 5
apiserver_request_total{code="409",component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="cluster",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="approval",verb="PUT",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/healthz",verb="GET",version=""} 1
`)
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	want := Counts{"POST certificatesigningrequests": 3, "PUT certificatesigningrequests/approval": 2}
	if len(d) != len(want) {
		t.Fatalf("Sub = %v, want %v", d, want)
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("Sub[%q] = %v, want %v", k, d[k], v)
		}
	}
	if d.Total() != 5 {
		t.Errorf("Total = %v, want 5", d.Total())
	}
	if _, err := Parse("apiserver_request_total{verb=\"GET\"} x"); err == nil {
		t.Error("Parse accepted a non-numeric value")
	}
}
