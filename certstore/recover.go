package certstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// recover repairs what a crash in the middle of an Update, ours or
// client-go's, may have left in the directory. It runs once, in Open, and
// only ever touches names of this store's prefix. The cases, in order:
//
//  1. Temporary files of internal/atomicfile (.<name>.tmp-*, which covers
//     the random .<prefix>-current.pem.tmp-link-* and the fixed
//     .tmp-link of older versions) for -current.pem, a timestamped file
//     or the pending key <prefix>.key.tmp: removed. The rename that would
//     have published them never happened, so the old state is intact. (A
//     kill while LoadPendingKey writes leaves one; nothing else would ever
//     remove it, so they piled up, each a copy of an unused key.)
//  2. An empty timestamped file: a name reserved by Update whose content was
//     never written. Removed, unless -current.pem points at it.
//  3. client-go's <prefix>-updated.pem symlink (client-go removes
//     -current.pem, then renames -updated.pem over it): if -current.pem is
//     missing or dangling and -updated.pem resolves, it is renamed into place,
//     finishing client-go's switch; otherwise it is removed. A regular file
//     under that name is neither client-go's nor ours and is left alone.
//  4. A -current.pem symlink whose target was deleted: repointed to the
//     newest timestamped file that holds a valid pair. If there is none, the
//     link is left as is and Current reports ErrNoCertificate, naming the
//     missing target.
//
// A missing -current.pem is not created from timestamped files: an Update
// that did not reach the link switch did not return success, so the store
// still holds the previous state (possibly the legacy .crt/.key pair).
func (s *Store) recover() error {
	steps := []struct {
		what string
		fn   func() error
	}{
		{"removing temporary files", s.removeTemp},
		{"removing empty files", s.removeEmpty},
		{"finishing client-go's switch", s.recoverUpdated},
		{"repairing dangling link", s.repairDangling},
	}
	for _, step := range steps {
		if err := step.fn(); err != nil {
			return fmt.Errorf("%s: %w", step.what, err)
		}
	}
	return nil
}

// removeTemp is case 1.
func (s *Store) removeTemp() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	current, pending := filepath.Base(s.CurrentPath()), filepath.Base(s.PendingKeyPath())
	removed := false
	for _, e := range entries {
		name := e.Name()
		i := strings.LastIndex(name, ".tmp-")
		if !strings.HasPrefix(name, "."+s.prefix) || i < 0 {
			continue
		}
		base := name[1:i]
		if _, ours := parseName(s.prefix, base); !ours && base != current && base != pending {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = true
	}
	if removed {
		return atomicfile.SyncDir(s.dir)
	}
	return nil
}

// removeEmpty is case 2.
func (s *Store) removeEmpty() error {
	files, err := s.list()
	if err != nil {
		return err
	}
	cur, _ := os.Stat(s.CurrentPath())
	removed := false
	for _, f := range files {
		p := filepath.Join(s.dir, f.name)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 || (cur != nil && os.SameFile(fi, cur)) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = true
	}
	if removed {
		return atomicfile.SyncDir(s.dir)
	}
	return nil
}

// recoverUpdated is case 3.
func (s *Store) recoverUpdated() error {
	updated := s.updatedPath()
	fi, err := os.Lstat(updated)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return nil
	}
	_, curErr := os.Stat(s.CurrentPath())
	_, updErr := os.Stat(updated)
	if errors.Is(curErr, os.ErrNotExist) && updErr == nil {
		err = os.Rename(updated, s.CurrentPath())
	} else {
		err = os.Remove(updated)
	}
	if err != nil {
		return err
	}
	return atomicfile.SyncDir(s.dir)
}

// repairDangling is case 4.
func (s *Store) repairDangling() error {
	cur := s.CurrentPath()
	fi, err := os.Lstat(cur)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return nil // missing (left alone, see recover) or a regular file
	}
	if _, err := os.Stat(cur); !errors.Is(err, os.ErrNotExist) {
		return nil // resolves, or fails for another reason Current will report
	}
	files, err := s.list()
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(s.dir, f.name)
		data, err := atomicfile.ReadFile(p)
		if err != nil {
			continue
		}
		if _, err := parsePair(data, data); err != nil {
			continue
		}
		return atomicfile.Symlink(p, cur)
	}
	return nil
}
