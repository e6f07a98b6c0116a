package approver

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// maxNotified bounds the CSRs remembered as notified. Entries go when the
// CSR is decided or deleted, so the set holds at most the pending CSRs;
// past the bound, further CSRs get no Event (their log line remains).
const maxNotified = 100000

// notifiedSet remembers which CSRs got their one Event for a decision that
// leaves them pending (approval.Decision.Notify). It lives in memory: a new
// leader records the Event again, once.
type notifiedSet struct {
	mu  sync.Mutex // guards uid
	uid map[types.UID]struct{}
}

// add records uid and reports whether it was new (an Event is due).
func (s *notifiedSet) add(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.uid[uid]; ok || len(s.uid) >= maxNotified {
		return false
	}
	if s.uid == nil {
		s.uid = map[types.UID]struct{}{}
	}
	s.uid[uid] = struct{}{}
	return true
}

// forget drops uid: its CSR was decided or deleted.
func (s *notifiedSet) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.uid, uid)
}

func (s *notifiedSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uid)
}
