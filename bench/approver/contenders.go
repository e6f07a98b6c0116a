package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/approver"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// The contenders. kcm and tlsboot (the built binary) are the product
// comparison; ceiling is the API server's own limit; the events-* ones run
// the approver's controller in this process with different Event policies.
const (
	kcm     contender = "kcm"
	ceiling contender = "ceiling"
	// ceilingPatch is the ceiling writing each approval as the approver
	// does: a JSON patch of the approval subresource, conditional on the
	// resourceVersion.
	ceilingPatch contender = "ceiling-patch"
	tlsboot      contender = "tlsboot"
	// tlsbootQPS is the binary with a higher client rate limit (-qps).
	tlsbootQPS contender = "tlsboot-qps"
	// evEvery: an Event for every decision, the approver's own writer
	// (what `tlsboot approver` did before the Event decision).
	evEvery contender = "events-every"
	// evWarnings: Events for denials and CSRs left pending only, the
	// approver's own writer (what `tlsboot approver` does).
	evWarnings contender = "events-warnings"
	// evRecord: an Event for every decision through client-go's
	// record.EventBroadcaster (core/v1, aggregation and spam filter).
	evRecord contender = "events-record"
	// evSeries: an Event for every decision through client-go's
	// events.k8s.io/v1 broadcaster (series).
	evSeries contender = "events-series"
)

var allContenders = []contender{kcm, ceiling, ceilingPatch, tlsboot, tlsbootQPS, evEvery, evWarnings, evRecord, evSeries}

// decides reports whether who runs tlsboot's policy (and so denies wrong-O CSRs).
func (who contender) decides() bool {
	return who == tlsboot || who == tlsbootQPS || strings.HasPrefix(string(who), "events-")
}

// eventsWanted is how many Events who records for a burst of n good CSRs
// with denied wrong-O ones; lossy says that some may be dropped.
func (who contender) eventsWanted(n, denied int) (want int, lossy bool) {
	switch who {
	case tlsboot, tlsbootQPS, evWarnings:
		return denied, false
	case evEvery:
		return n + denied, false
	case evRecord, evSeries:
		return n + denied, true
	}
	return 0, false
}

// ceilingApprover approves the good CSRs of the burst with bare PUTs of the
// approval subresource: no checks, no SubjectAccessReview, no Event, 16
// workers on one client without a client-side rate limit. Its informer
// watches from before the burst, as the approvers' do.
type ceilingApprover struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // guards err
	err    error
}

func startCeiling(ctx context.Context, c *testcluster.Cluster, workers int, patch bool) (*ceilingApprover, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	protobuf(cfg)
	cfg.QPS = -1 // no client-side rate limit
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &ceilingApprover{cancel: cancel}
	work := make(chan *certificatesv1.CertificateSigningRequest, 100000)
	// An informer, not a bare watch: the API server may end a watch in a
	// burst, and an informer watches again from where it was.
	inf := informers.NewSharedInformerFactory(client, 0).Certificates().V1().CertificateSigningRequests().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
		if obj, ok := o.(*certificatesv1.CertificateSigningRequest); ok && strings.HasPrefix(obj.Name, good) && len(obj.Status.Conditions) == 0 {
			work <- obj.DeepCopy()
		}
	}}); err != nil {
		cancel()
		return nil, err
	}
	a.wg.Go(func() {
		defer close(work)
		inf.RunWithContext(ctx)
	})
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		a.stop()
		return nil, errors.New("the ceiling's CSR informer did not sync")
	}
	for range workers {
		a.wg.Go(func() {
			for obj := range work {
				cond := certificatesv1.CertificateSigningRequestCondition{
					Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Ceiling", Message: "bare approval",
				}
				var err error
				if patch {
					p := fmt.Sprintf(`[{"op":"replace","path":"/metadata/resourceVersion","value":%q},{"op":"add","path":"/status/conditions","value":[{"type":"Approved","status":"True","reason":"Ceiling","message":"bare approval","lastUpdateTime":%q}]}]`,
						obj.ResourceVersion, time.Now().UTC().Format(time.RFC3339))
					_, err = client.CertificatesV1().CertificateSigningRequests().Patch(ctx, obj.Name, types.JSONPatchType, []byte(p), metav1.PatchOptions{}, "approval")
				} else {
					obj.Status.Conditions = append(obj.Status.Conditions, cond)
					_, err = client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, obj.Name, obj, metav1.UpdateOptions{})
				}
				if err != nil && ctx.Err() == nil {
					a.fail(fmt.Errorf("approving %s: %w", obj.Name, err))
				}
			}
		})
	}
	return a, nil
}

func (a *ceilingApprover) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
		fmt.Fprintln(os.Stderr, "  ceiling:", err)
	}
}

func (a *ceilingApprover) stop() error {
	a.cancel()
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// protobuf sets the content types `tlsboot approver` uses.
func protobuf(cfg *rest.Config) {
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
}

// inProcess is the approver's controller run in this process with the
// defaults of `tlsboot approver` (-workers, -inproc-qps with twice that
// burst on the controller's client and on a separate Event client,
// protobuf, SAR reuse 5 s), without leader election, and with the Event
// recorder of who.
type inProcess struct {
	cancel    context.CancelFunc
	done      chan error
	stopEvent func()
}

func startInProcess(ctx context.Context, c *testcluster.Cluster, who contender, s setup) (*inProcess, error) {
	newClient := func() (kubernetes.Interface, error) {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
		if err != nil {
			return nil, err
		}
		cfg.QPS, cfg.Burst = float32(s.inprocQPS), 2*s.inprocQPS
		cfg.UserAgent = "tlsboot-approver"
		protobuf(cfg)
		return kubernetes.NewForConfig(cfg)
	}
	client, err := newClient()
	if err != nil {
		return nil, err
	}
	eventClient, err := newClient()
	if err != nil {
		return nil, err
	}
	policy, err := approval.New(approval.Options{MaxExpiration: 365 * 24 * time.Hour, PendingTimeout: time.Hour})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(klog.NewContext(ctx, klog.Background().V(1)))
	p := &inProcess{cancel: cancel, done: make(chan error, 1), stopEvent: func() {}}
	host, _ := os.Hostname()
	identity := host + "_bench"
	var rec approver.EventRecorder
	switch who {
	case evEvery, evWarnings:
		rec, p.stopEvent = approver.StartEventWriter(ctx, eventClient, identity, who == evEvery)
	case evRecord:
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventClient.CoreV1().Events("")})
		rec = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "tlsboot-approver", Host: identity})
		p.stopEvent = b.Shutdown
	case evSeries:
		b := events.NewBroadcaster(&events.EventSinkImpl{Interface: eventClient.EventsV1()})
		if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
			cancel()
			return nil, err
		}
		rec = seriesRecorder{b.NewRecorder(scheme.Scheme, "tlsboot-approver")}
		p.stopEvent = b.Shutdown
	default:
		cancel()
		return nil, fmt.Errorf("contender %s does not run in this process", who)
	}
	ctrl, err := approver.New(approver.Options{Client: client, EventClient: eventClient, Policy: policy, Workers: s.workers,
		Identity: identity, Recorder: rec})
	if err != nil {
		p.stopEvent()
		cancel()
		return nil, err
	}
	go func() { p.done <- ctrl.Run(ctx, nil) }()
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case err := <-p.done:
			return false, fmt.Errorf("the approver stopped: %v", err)
		default:
		}
		return ctrl.Ready() == nil, nil
	})
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("waiting for the in-process approver's caches: %w", err)
	}
	return p, nil
}

// stop stops the controller, then the Event recorder (after the bench
// has counted the Events).
func (p *inProcess) stop() {
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
	p.stopEvent()
}

// seriesRecorder records through an events.k8s.io recorder.
type seriesRecorder struct{ rec events.EventRecorder }

func (s seriesRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	s.rec.Eventf(obj, nil, eventtype, reason, "Decide", "%s", message)
}
