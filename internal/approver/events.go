package approver

import (
	"context"
	"fmt"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/approval"
)

// EventRecorder records an Event about a CSR. client-go's
// record.EventRecorder satisfies it.
type EventRecorder interface {
	Event(object runtime.Object, eventtype, reason, message string)
}

// eventWriter writes Events with a few goroutines from a large queue.
//
// Which decisions get an Event: denials (Warning) and CSRs left pending for
// a human (Warning, once per CSR), so that `kubectl describe csr` says why
// a CSR was refused or is waiting. An approval gets none unless approvals
// is set: its Approved condition (reason AutoApproved, the message naming
// the rule) and its log line are the record, as kube-controller-manager's
// csrapproving, which records no Event at all. An Event per approval is one
// more API write per CSR, and in a 2,000-CSR burst it cost the API server
// and etcd about a third more CPU (BENCHMARKS.md, "Events per decision";
// docs/approver.md, "Events").
//
// Why not client-go's record.EventBroadcaster: its queue holds 1,000 events
// and drops the rest, and it writes one at a time; a burst of thousands of
// decisions lost a third of its Events in the benchmark. Its aggregation
// and spam filter key on the involved object, so they never merge Events
// about distinct CSRs; events.k8s.io series likewise only merge repeats on
// one object. One Event per CSR is written here, never aggregated; if even
// this queue overflows (the API server is down for long), Events are
// dropped and counted in the log — the CSR's condition remains the record.
//
// Per requester, at most eventsPerRequester Events are written in each
// eventWindow (limit): a requester that floods the approver with CSRs
// that are denied gets its first few Events, then none until the window
// ends; each CSR still gets its condition. What is not written is counted
// (dropped, the metric tlsboot_approver_events_dropped_total).
type eventWriter struct {
	client    kubernetes.Interface
	logger    klog.Logger
	source    corev1.EventSource
	clock     clock.PassiveClock
	approvals bool // also record approvals
	// limit, if not nil, bounds the Events per requester.
	limit *eventLimiter
	// dropped, if not nil, is called for every Event not written, with
	// why: "rate_limited" or "queue_full".
	dropped  func(reason string)
	queue    chan *corev1.Event
	stopOnce sync.Once
	wg       sync.WaitGroup
}

const (
	eventQueueSize = 20000
	eventWriters   = 4
)

var _ EventRecorder = (*eventWriter)(nil)

func newEventWriter(logger klog.Logger, client kubernetes.Interface, identity string, clk clock.PassiveClock) *eventWriter {
	return &eventWriter{client: client, logger: logger, clock: clk, queue: make(chan *corev1.Event, eventQueueSize),
		source: corev1.EventSource{Component: "tlsboot-approver", Host: identity},
		limit:  newEventLimiter(clk, eventsPerRequester, eventWindow)}
}

// StartEventWriter starts the Event writer that Run starts when
// Options.Recorder is nil, for a caller that passes it as Options.Recorder
// instead: the benchmark, which compares Event policies. With approvals,
// every approval gets an Event too (Run's writer records none). It writes
// every Event, with no limit per requester: it compares what Events cost.
//
// Events are written until stop is called: stop waits for the queue to be
// drained, for at most eventsTimeout once ctx is done. Event never blocks.
func StartEventWriter(ctx context.Context, client kubernetes.Interface, identity string, approvals bool) (rec EventRecorder, stop func()) {
	w := newEventWriter(klog.FromContext(ctx), client, identity, clock.RealClock{})
	w.approvals = approvals
	w.limit = nil
	writeCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.start(writeCtx)
	return w, func() {
		timer := time.AfterFunc(eventsTimeout, cancel)
		defer timer.Stop()
		w.stop()
		cancel()
	}
}

// start runs the writers until stop; ctx bounds the writes.
func (w *eventWriter) start(ctx context.Context) {
	for range eventWriters {
		w.wg.Go(func() {
			for ev := range w.queue {
				w.write(ctx, ev)
			}
		})
	}
}

// stop closes the queue and waits for the writers to drain it (their writes
// fail at once if ctx is already done).
func (w *eventWriter) stop() {
	w.stopOnce.Do(func() { close(w.queue) })
	w.wg.Wait()
}

func (w *eventWriter) write(ctx context.Context, ev *corev1.Event) {
	if _, err := w.client.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && ctx.Err() == nil {
		w.logger.V(1).Info("Recording an event failed", "csr", ev.InvolvedObject.Name, "reason", ev.Reason, "err", err)
	}
}

// approvalEvent reports whether an Event is the record of an approval.
func approvalEvent(eventtype, reason string) bool {
	return eventtype == corev1.EventTypeNormal && reason == approval.ReasonAutoApproved
}

// Event queues an Event about a CSR, unless it records an approval and
// approvals are not recorded, or its requester used up its Events for
// now (only Events that are not approvals count); it never blocks.
func (w *eventWriter) Event(object runtime.Object, eventtype, reason, message string) {
	csr, ok := object.(*certificatesv1.CertificateSigningRequest)
	if !ok || (!w.approvals && approvalEvent(eventtype, reason)) {
		return
	}
	if !approvalEvent(eventtype, reason) {
		switch allowed, first := w.limit.allow(csr.Spec.Username); {
		case first:
			w.logger.Info("Too many Events about the certificate signing requests of one requester: recording no more for now", "requester", csr.Spec.Username,
				"csr", csr.Name, "limit", eventsPerRequester, "window", eventWindow)
			fallthrough
		case !allowed:
			w.drop("rate_limited")
			return
		}
	}
	now := metav1.NewTime(w.clock.Now())
	ev := &corev1.Event{
		// Events about cluster-scoped objects live in "default", as
		// client-go's recorder puts them.
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", csr.Name, now.UnixNano()), Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{
			Kind: "CertificateSigningRequest", APIVersion: certificatesv1.SchemeGroupVersion.String(),
			Name: csr.Name, UID: csr.UID, ResourceVersion: csr.ResourceVersion,
		},
		Reason: reason, Message: message, Type: eventtype, Count: 1,
		FirstTimestamp: now, LastTimestamp: now, Source: w.source,
		ReportingController: w.source.Component, ReportingInstance: w.source.Host,
	}
	select {
	case w.queue <- ev:
	default:
		w.logger.V(1).Info("Event queue full: dropping event", "csr", csr.Name, "reason", reason)
		w.drop("queue_full")
	}
}

func (w *eventWriter) drop(why string) {
	if w.dropped != nil {
		w.dropped(why)
	}
}

// At most eventsPerRequester Events per requester in each eventWindow.
// Why 10 a minute: an operator reading `kubectl get events` needs a few
// examples of why a requester's CSRs are refused, not one per CSR; a
// requester's flood of 1,500 denied CSRs wrote 1,500 Events before
// (BENCHMARKS.md, "Approver memory under a CSR flood"). At most
// maxEventRequesters requesters are tracked at once: past that (thousands of
// distinct identities refused within one minute), Events are dropped until
// windows expire, so that the limiter's memory is bounded too.
const (
	eventsPerRequester = 10
	eventWindow        = time.Minute
	maxEventRequesters = 10000
)

// eventLimiter counts Events per requester in fixed windows that start
// with the requester's first Event. A nil *eventLimiter allows everything.
type eventLimiter struct {
	clock  clock.PassiveClock
	limit  int
	window time.Duration

	mu   sync.Mutex // guards seen
	seen map[string]*eventCount
}

type eventCount struct {
	start time.Time
	n     int
}

func newEventLimiter(clk clock.PassiveClock, limit int, window time.Duration) *eventLimiter {
	return &eventLimiter{clock: clk, limit: limit, window: window, seen: map[string]*eventCount{}}
}

// allow reports whether requester may have one more Event now, and whether
// this is the first refusal of its window (to log once).
func (l *eventLimiter) allow(requester string) (allowed, firstRefusal bool) {
	if l == nil {
		return true, false
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.seen[requester]
	if ok && now.Sub(c.start) >= l.window {
		c, ok = nil, false
		delete(l.seen, requester)
	}
	if !ok {
		if len(l.seen) >= maxEventRequesters {
			l.expire(now)
		}
		if len(l.seen) >= maxEventRequesters {
			return false, false
		}
		c = &eventCount{start: now}
		l.seen[requester] = c
	}
	c.n++
	return c.n <= l.limit, c.n == l.limit+1
}

// expire forgets the windows that ended by now. l.mu is held.
func (l *eventLimiter) expire(now time.Time) {
	for r, c := range l.seen {
		if now.Sub(c.start) >= l.window {
			delete(l.seen, r)
		}
	}
}

// eventsTimeout bounds how long a shutdown waits for queued Events.
const eventsTimeout = 5 * time.Second
