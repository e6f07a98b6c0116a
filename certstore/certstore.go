// Package certstore keeps a node's TLS client or serving certificate on disk
// in the layout the kubelet uses, so that tlsboot and the kubelet can share a
// certificate directory and kubeconfigs can point at one stable path.
//
// # Layout
//
// The layout is the one of client-go's k8s.io/client-go/util/certificate file
// store, which the kubelet uses:
//
//	<dir>/<prefix>-2006-01-02-15-04-05.pem   certificate chain PEM, then the private key PEM (mode 0600)
//	<dir>/<prefix>-current.pem               symlink with an absolute target to the newest of them
//	<dir>/<prefix>.crt, <dir>/<prefix>.key   legacy pair, read when -current.pem is absent
//	<dir>/<prefix>.key.tmp                   pending key waiting for its certificate (LoadPendingKey)
//
// The timestamp is Options.Now formatted as "2006-01-02-15-04-05" in the
// location Now returns (client-go uses local time). When a second name is
// needed within one second, a counter is appended: <prefix>-<timestamp>-1.pem,
// -2, and so on. Both stores read each other's files; the interop tests check
// it in both directions.
//
// # Why not client-go's store
//
// client-go's store (v0.37) is the compatibility target but not a model:
//   - it never fsyncs the directory, so a rename or a new file may not survive
//     a crash even though the file data was synced;
//   - it opens <prefix>-<timestamp>.pem with O_TRUNC, so a second Update within
//     the same second overwrites the file the current link may point at, and a
//     crash mid-write leaves a truncated pair behind the link;
//   - it switches the link by removing -current.pem and then renaming
//     <prefix>-updated.pem over it, leaving a window with no current pair;
//   - its recovery only handles that window (an -updated.pem link with no
//     -current.pem); a -current.pem link whose target was deleted is not
//     repaired;
//   - Update fails when -current.pem is a regular file instead of a link;
//   - Update writes only the first PEM block of the key input, so a key with
//     an "EC PARAMETERS" block first (as openssl writes) is stored without
//     its key, and it validates the pair only after writing the file;
//   - it keeps every file it ever wrote: nothing is pruned;
//   - it creates the directory with mode 0755; this package uses 0700.
//
// *Store has the method set of client-go's certificate.FileStore (Current,
// Update, CurrentPath). client-go's certificate manager, however, only
// treats a *certificate.NoCertKeyError from Current as "no certificate yet";
// a caller plugging a Store into it must translate ErrNoCertificate, which
// this package cannot do without importing client-go.
//
// This package creates each pair file exclusively (nothing is ever
// overwritten) and fsyncs it before anything refers to it, switches the link
// with a single rename of a new link followed by an fsync of the directory
// (internal/atomicfile), repairs the states listed in Open, and prunes old
// files.
package certstore

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// timeFormat is client-go's timestamp format for pair file names.
const timeFormat = "2006-01-02-15-04-05"

// defaultKeep is how many timestamped files Update keeps when Options.Keep is 0.
const defaultKeep = 5

// ErrNoCertificate is wrapped by the error Current returns when the store
// holds no certificate: no -current.pem (or one whose target is gone) and no
// legacy .crt/.key pair.
var ErrNoCertificate = errors.New("no certificate stored")

// Options configure Open. The zero value of each optional field is useful.
type Options struct {
	// Dir is the certificate directory, e.g. /var/lib/kubelet/pki. It is
	// made absolute by Open and created with mode 0700 if missing; an
	// existing directory keeps its mode, and Open refuses it when it is
	// group- or world-writable (see Open).
	Dir string
	// Prefix names the pair, e.g. "kubelet-client" or "kubelet-server".
	// Several prefixes may share one directory: a store only ever removes
	// files named <Prefix>-<timestamp>[-N].pem.
	Prefix string
	// Keep is how many timestamped files Update keeps, newest first; 0
	// means 5. The file -current.pem points at is never removed.
	Keep int
	// Now is the clock used for file names; nil means time.Now.
	Now func() time.Time
	// OnPruneError, if set, is called with the error of a failed pruning
	// after an otherwise successful Update. Pruning is best effort: its
	// failure never fails the Update.
	OnPruneError func(error)
}

// Validate reports whether o can be used to open a store.
func (o Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("certstore: options: dir is empty")
	case o.Prefix == "":
		return errors.New("certstore: options: prefix is empty")
	case strings.ContainsAny(o.Prefix, `/\`) || strings.HasPrefix(o.Prefix, "."):
		return fmt.Errorf("certstore: options: prefix %q must be a plain file name prefix without separators or a leading dot", o.Prefix)
	case o.Keep < 0:
		return fmt.Errorf("certstore: options: keep is %d, must be 0 (default %d) or more", o.Keep, defaultKeep)
	}
	return nil
}

// Store is a certificate store in one directory for one prefix. Its methods
// are safe for concurrent use within one process. Two processes updating the
// same directory and prefix never overwrite each other's files, but their
// pruning and link switches are not coordinated.
type Store struct {
	dir    string // absolute
	prefix string
	keep   int
	now    func() time.Time
	onErr  func(error)

	// mu guards the update sequence on disk: choosing and reserving a file
	// name, writing it, switching -current.pem and pruning, so that two
	// concurrent Updates cannot prune each other's fresh file or switch the
	// link out of order. Current and Files do not take it: the link switch
	// is one rename, so a reader sees the old pair or the new one.
	mu sync.Mutex

	// pendingMu serialises LoadPendingKey and DropPendingKey, so that two
	// callers never both create the pending key and one of them hold a key
	// whose file the other replaced.
	pendingMu sync.Mutex
}

// Open validates opts, creates the directory if needed and repairs what an
// interrupted update may have left behind (see recover.go for each case).
// It refuses a directory its group or everyone can write to, with a
// one-line error that names it, its mode and the chmod that makes it
// private, and changes nothing in it. Errors name the
// directory or file concerned. Open does not coordinate with other
// processes; see Store.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("certstore: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certstore: creating directory: %w", err)
	}
	// A directory others can write to lets them plant or swap keys and
	// links. It was made by the operator (MkdirAll creates 0700), so it is
	// refused, not silently chmodded.
	if err := atomicfile.CheckDir(dir, "certificate directory"); err != nil {
		return nil, fmt.Errorf("certstore: %w", err)
	}
	s := &Store{dir: dir, prefix: opts.Prefix, keep: opts.Keep, now: opts.Now, onErr: opts.OnPruneError}
	if s.keep == 0 {
		s.keep = defaultKeep
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("certstore: recovering %s: %w", s.CurrentPath(), err)
	}
	return s, nil
}

// Dir is the store's directory, absolute.
func (s *Store) Dir() string { return s.dir }

// CurrentPath returns <dir>/<prefix>-current.pem, the path kubeconfigs and
// the kubelet should point at. Dir is absolute.
func (s *Store) CurrentPath() string { return CurrentPath(s.dir, s.prefix) }

// CurrentPath is Store.CurrentPath for the store of prefix in dir, without
// opening it (for tools that only look, like `tlsboot status`).
func CurrentPath(dir, prefix string) string { return filepath.Join(dir, prefix+"-current.pem") }

func legacyCert(dir, prefix string) string { return filepath.Join(dir, prefix+".crt") }
func legacyKey(dir, prefix string) string  { return filepath.Join(dir, prefix+".key") }

func (s *Store) updatedPath() string { return filepath.Join(s.dir, s.prefix+"-updated.pem") }

// Current returns the stored certificate with Leaf set. It reads
// -current.pem, a symlink or a regular file, and, when that is absent or a
// link to a deleted file, the legacy <prefix>.crt and <prefix>.key pair like
// client-go. With neither it returns an error wrapping ErrNoCertificate; an
// unreadable or corrupt pair gives an error naming the file. Every file is
// read with the limit of atomicfile.MaxReadSize. Current is safe for
// concurrent use with every method of s.
func (s *Store) Current() (*tls.Certificate, error) {
	cert, _, err := ReadCurrent(s.dir, s.prefix)
	return cert, err
}

// ReadCurrent is Store.Current for the store of prefix in dir without
// opening it: it creates, repairs and removes nothing, for tools that only
// look (like `tlsboot status`). It also returns the file the certificate
// was read from: <dir>/<prefix>-current.pem or the legacy <prefix>.crt.
// Errors are those of Current; an invalid prefix is refused as Open
// refuses it.
func ReadCurrent(dir, prefix string) (cert *tls.Certificate, path string, err error) {
	if err := (Options{Dir: dir, Prefix: prefix}).Validate(); err != nil {
		return nil, "", err
	}
	cur := CurrentPath(dir, prefix)
	data, err := atomicfile.ReadFile(cur)
	if err == nil {
		cert, err := parsePair(data, data)
		if err != nil {
			return nil, "", fmt.Errorf("certstore: %s: %w", cur, err)
		}
		return cert, cur, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("certstore: %w", err)
	}
	missing := fmt.Sprintf("%s does not exist", cur)
	if target, lerr := os.Readlink(cur); lerr == nil {
		missing = fmt.Sprintf("%s points to missing %s", cur, target)
	}

	cert, err = readLegacy(dir, prefix)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("certstore: %s and no legacy pair %s, %s: %w", missing, legacyCert(dir, prefix), legacyKey(dir, prefix), ErrNoCertificate)
	}
	if err != nil {
		return nil, "", err
	}
	return cert, legacyCert(dir, prefix), nil
}

// StoredAt returns when the pair that Current reads was stored: the
// modification time of the file -current.pem resolves to or, when Current
// falls back to the legacy pair, of <prefix>.crt. Update writes each pair
// file once and never modifies it, so for the pairs of this package it is
// when Update wrote it; for a legacy pair it is when that file was last
// written. Callers use it as an upper bound on when the certificate was
// issued. With no certificate (as Current decides it) the error wraps
// ErrNoCertificate; other errors name the file. It reads metadata only,
// never the certificate, and is safe for concurrent use with every method
// of s; an Update between a Current and a StoredAt makes them describe
// different pairs, so call both from the goroutine that updates.
func (s *Store) StoredAt() (time.Time, error) { return StoredAt(s.dir, s.prefix) }

// StoredAt is Store.StoredAt for the store of prefix in dir without
// opening it: it creates, repairs and removes nothing (for tools that only
// look, like `tlsboot status`). An invalid prefix is refused as Open
// refuses it.
func StoredAt(dir, prefix string) (time.Time, error) {
	if err := (Options{Dir: dir, Prefix: prefix}).Validate(); err != nil {
		return time.Time{}, err
	}
	cur := CurrentPath(dir, prefix)
	fi, err := os.Stat(cur)
	if err == nil {
		return fi.ModTime(), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return time.Time{}, fmt.Errorf("certstore: %w", err)
	}
	// As readLegacy: the legacy pair counts only when both files exist.
	certPath, keyPath := legacyCert(dir, prefix), legacyKey(dir, prefix)
	fi, err = os.Stat(certPath)
	if err == nil {
		_, err = os.Stat(keyPath)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return time.Time{}, fmt.Errorf("certstore: no %s and no legacy pair %s, %s: %w", cur, certPath, keyPath, ErrNoCertificate)
	case err != nil:
		return time.Time{}, fmt.Errorf("certstore: %w", err)
	}
	return fi.ModTime(), nil
}

// readLegacy reads the kubelet's legacy pair. Like client-go it is used only
// when both files exist; otherwise the error wraps os.ErrNotExist.
func readLegacy(dir, prefix string) (*tls.Certificate, error) {
	certPath, keyPath := legacyCert(dir, prefix), legacyKey(dir, prefix)
	certPEM, err := atomicfile.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("certstore: %w", err)
	}
	keyPEM, err := atomicfile.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("certstore: %w", err)
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certstore: %s, %s: %w", certPath, keyPath, err)
	}
	return cert, nil
}

// Update validates the pair, writes it to a new timestamped file, points
// -current.pem at it and prunes old files. Invalid input is rejected before
// anything is written. The returned certificate has Leaf set and is what
// Current returns from then on. Once Update returns nil the new pair is
// durable (file and directory fsynced); on error -current.pem is as it was.
// Concurrent Updates of one Store are serialised; a failed pruning does not
// fail Update (see Options.OnPruneError).
func (s *Store) Update(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	data, err := encodePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certstore: updating %s: %w", s.prefix, err)
	}
	// Parse what is written, not what was given, so Update returns exactly
	// what Current will read.
	cert, err := parsePair(data, data)
	if err != nil {
		return nil, fmt.Errorf("certstore: updating %s: %w", s.prefix, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	name, err := s.write(data)
	if err != nil {
		return nil, fmt.Errorf("certstore: updating %s: %w", s.prefix, err)
	}
	if err := atomicfile.Symlink(name, s.CurrentPath()); err != nil {
		os.Remove(name) // never current, so not worth keeping; best effort
		return nil, fmt.Errorf("certstore: updating %s: %w", s.prefix, err)
	}
	if err := s.prune(); err != nil && s.onErr != nil {
		s.onErr(fmt.Errorf("certstore: pruning %s: %w", s.prefix, err))
	}
	return cert, nil
}

// write stores data under a fresh timestamped name and returns its absolute
// path. The name is created with O_EXCL, so no existing file, ours or another
// process's, is ever overwritten. The content goes straight into the new file
// and is fsynced; no temporary file and rename are needed because nothing
// refers to the name until Update switches the link, and that switch fsyncs
// the directory, which makes the new entry durable too. A crash before the
// switch leaves an unreferenced file that is empty (Open removes it) or
// partial (never chosen: recovery only repoints to files that parse).
func (s *Store) write(data []byte) (string, error) {
	ts := s.now().Format(timeFormat)
	n, err := s.nextCounter(ts)
	if err != nil {
		return "", err
	}
	for tries := 0; tries < 1000; tries, n = tries+1, n+1 {
		name := filepath.Join(s.dir, s.pairName(ts, n))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", atomicfile.NewError("creating", name, err)
		}
		if err := writeSync(f, data); err != nil {
			os.Remove(name)
			return "", atomicfile.NewError("writing", name, err)
		}
		return name, nil
	}
	return "", fmt.Errorf("no free file name for timestamp %s", ts)
}

// writeSync writes data to f, fsyncs and closes it.
func writeSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// nextCounter returns the counter for a new file with timestamp ts: one more
// than the highest already used for ts, so that names keep sorting in write
// order even after pruning removed a lower counter.
func (s *Store) nextCounter(ts string) (int, error) {
	files, err := s.list()
	if err != nil {
		return 0, err
	}
	next := 0
	for _, f := range files {
		if f.ts == ts && f.n >= next {
			next = f.n + 1
		}
	}
	return next, nil
}

func (s *Store) pairName(ts string, n int) string {
	if n == 0 {
		return s.prefix + "-" + ts + ".pem"
	}
	return fmt.Sprintf("%s-%s-%d.pem", s.prefix, ts, n)
}

// Files returns the absolute paths of the timestamped pair files, newest
// first, including the one -current.pem points at. Newest means latest timestamp in the name, then highest counter;
// if the clock went backwards, that order follows the names, not the writes.
func (s *Store) Files() ([]string, error) { return PairFiles(s.dir, s.prefix) }

// PairFiles is Files for a store that is not opened: it only reads dir,
// and repairs nothing (for tools that inspect, like `tlsboot status`).
func PairFiles(dir, prefix string) ([]string, error) {
	files, err := listPairs(dir, prefix)
	if err != nil {
		return nil, fmt.Errorf("certstore: %w", err)
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(dir, f.name)
	}
	return paths, nil
}

// prune removes timestamped files beyond the newest s.keep, except the one
// -current.pem resolves to, and fsyncs the directory once.
func (s *Store) prune() error {
	files, err := s.list()
	if err != nil || len(files) <= s.keep {
		return err
	}
	cur, _ := os.Stat(s.CurrentPath()) // nil if missing: then nothing is protected but nothing is current either
	var errs []error
	for _, f := range files[s.keep:] {
		p := filepath.Join(s.dir, f.name)
		if fi, err := os.Lstat(p); err == nil && cur != nil && os.SameFile(fi, cur) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// file is a timestamped pair file of this store's prefix.
type file struct {
	name string
	ts   string    // the timestamp as written in the name
	t    time.Time // ts parsed, for ordering
	n    int       // counter suffix, 0 when absent
}

// list returns the store's timestamped files, newest first.
func (s *Store) list() ([]file, error) { return listPairs(s.dir, s.prefix) }

func listPairs(dir, prefix string) ([]file, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []file
	for _, e := range entries {
		if f, ok := parseName(prefix, e.Name()); ok && !e.IsDir() {
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(a, b file) int {
		if c := b.t.Compare(a.t); c != 0 {
			return c
		}
		if b.n != a.n {
			return b.n - a.n
		}
		return strings.Compare(b.name, a.name)
	})
	return files, nil
}

// parseName reports whether name is <prefix>-<timestamp>[-N].pem, with N a
// positive decimal without leading zeros. Anything else, including other
// prefixes sharing the directory and -current.pem, is not ours to touch.
func parseName(prefix, name string) (file, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return file{}, false
	}
	rest, ok = strings.CutSuffix(rest, ".pem")
	if !ok || len(rest) < len(timeFormat) {
		return file{}, false
	}
	ts, tail := rest[:len(timeFormat)], rest[len(timeFormat):]
	t, err := time.Parse(timeFormat, ts)
	if err != nil || t.Format(timeFormat) != ts {
		return file{}, false
	}
	f := file{name: name, ts: ts, t: t}
	if tail == "" {
		return f, true
	}
	digits, ok := strings.CutPrefix(tail, "-")
	if !ok || digits == "" || digits[0] == '0' || len(digits) > 9 {
		return file{}, false
	}
	if f.n, err = strconv.Atoi(digits); err != nil || f.n <= 0 {
		return file{}, false
	}
	return f, true
}

// parsePair parses a PEM certificate chain (leaf first) and a PEM private
// key. Every CERTIFICATE block must parse, the key must match the leaf, and
// the result has Leaf set. Blocks of other types are ignored, so certPEM and
// keyPEM may be the same combined file.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	certs, key, err := splitPEM(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	var chain []byte
	for _, c := range certs {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	// tls.X509KeyPair parses the key in every format crypto/tls accepts and
	// checks that it matches the leaf's public key.
	cert, err := tls.X509KeyPair(chain, pem.EncodeToMemory(key))
	if err != nil {
		return nil, err
	}
	cert.Leaf = certs[0]
	return &cert, nil
}

// encodePair returns the content of a pair file: the certificates of certPEM
// re-encoded without anything between them, then the private key block.
func encodePair(certPEM, keyPEM []byte) ([]byte, error) {
	certs, key, err := splitPEM(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	var data []byte
	for _, c := range certs {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return append(data, pem.EncodeToMemory(&pem.Block{Type: key.Type, Bytes: key.Bytes})...), nil
}

// splitPEM parses every CERTIFICATE block of certPEM and finds the first
// private key block of keyPEM, recognised by type like crypto/tls does.
func splitPEM(certPEM, keyPEM []byte) ([]*x509.Certificate, *pem.Block, error) {
	var certs []*x509.Certificate
	for block, rest := pem.Decode(certPEM); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("no certificate found")
	}
	for block, rest := pem.Decode(keyPEM); block != nil; block, rest = pem.Decode(rest) {
		if block.Type == "PRIVATE KEY" || strings.HasSuffix(block.Type, " PRIVATE KEY") {
			return certs, block, nil
		}
	}
	return nil, nil, errors.New("no private key found")
}
