package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/token"
)

// tokenEnv is the environment variable join reads the bootstrap token from.
// Unlike the command line, which every local user can read (ps,
// /proc/PID/cmdline), /proc/PID/environ is readable only by the process's
// own user and root.
const tokenEnv = "TLSBOOT_TOKEN"

// tokenFrom says where a bootstrap token came from.
type tokenFrom int

const (
	tokenFromNone  tokenFrom = iota
	tokenFromArgs            // --token (or create's TOKEN argument): visible to every local user
	tokenFromFile            // --token-file PATH
	tokenFromStdin           // --token-file -
	tokenFromEnv             // TLSBOOT_TOKEN
)

// maxTokenLine bounds what is read of stdin for one token: a token is 23
// bytes, so anything much longer is not one, and nothing more is buffered.
const maxTokenLine = 256

// tokenSources are the places a token may be given, as the command has them.
type tokenSources struct {
	args      string // the token on the command line, "" if not given
	argsName  string // how the command names it: "--token" or "TOKEN"
	argsGiven bool
	file      string // --token-file, "" if not given; "-" is stdin
	env       string // TLSBOOT_TOKEN, "" if unset or empty (or not read)
	stdin     io.Reader
}

// resolve returns the one token given, and where it came from. Two sources
// are a usage error, so is none; a token file must be private (see
// readTokenFile). No error repeats the token.
func (s tokenSources) resolve() (token.Token, tokenFrom, error) {
	var given []string
	if s.argsGiven {
		given = append(given, s.argsName)
	}
	if s.file != "" {
		given = append(given, "--token-file")
	}
	if s.env != "" {
		given = append(given, tokenEnv)
	}
	switch len(given) {
	case 0:
		return token.Token{}, tokenFromNone, nil
	case 1:
	default:
		return token.Token{}, tokenFromNone, usageError{fmt.Errorf("the bootstrap token is given %d times (%s): give it once, preferably with --token-file or %s, which other local users cannot read", len(given), strings.Join(given, " and "), tokenEnv)}
	}
	var (
		text, name string
		from       tokenFrom
	)
	switch {
	case s.argsGiven:
		text, name, from = s.args, s.argsName, tokenFromArgs
	case s.file == "-":
		line, err := readTokenLine(s.stdin)
		if err != nil {
			return token.Token{}, tokenFromNone, err
		}
		text, name, from = line, "--token-file - (stdin)", tokenFromStdin
	case s.file != "":
		data, err := readTokenFile(s.file)
		if err != nil {
			return token.Token{}, tokenFromNone, err
		}
		text, name, from = trimNewline(string(data)), "--token-file "+s.file, tokenFromFile
	default:
		text, name, from = s.env, tokenEnv, tokenFromEnv
	}
	tok, err := token.Parse(text)
	if err != nil {
		return token.Token{}, tokenFromNone, usageError{fmt.Errorf("%s: %w", name, err)}
	}
	return tok, from, nil
}

// readTokenFile reads a token file with the bounded private-file reader: a
// regular file (no symbolic link), owned by the user tlsboot runs as, with
// no group or other permission bits. A file others can read is refused
// rather than used, so that the mistake is fixed while the token may still
// be unseen.
func readTokenFile(path string) ([]byte, error) {
	data, err := atomicfile.ReadPrivateFile(path)
	var unsafe *atomicfile.UnsafeFileError
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, usageError{fmt.Errorf("--token-file %s does not exist: write the token ID.SECRET there (mode 0600) or pass another file", path)}
	case errors.As(err, &unsafe):
		if fi, statErr := os.Lstat(path); statErr == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("--token-file %s has mode %04o: other local users can read or change the bootstrap token; run 'chmod 600 %s' (and, if others may have read it, replace the token), then run again", path, fi.Mode().Perm(), path)
		}
		return nil, fmt.Errorf("--token-file %s %s: the bootstrap token must be in a regular file private to the user tlsboot runs as; fix it, then run again", path, unsafe.Reason)
	}
	return nil, fmt.Errorf("--token-file: %w", err)
}

// readTokenLine reads one line of at most maxTokenLine bytes.
func readTokenLine(r io.Reader) (string, error) {
	if r == nil {
		r = strings.NewReader("")
	}
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxTokenLine+1), maxTokenLine+1).ReadString('\n')
	switch {
	case err != nil && err != io.EOF:
		return "", fmt.Errorf("--token-file -: reading the token from stdin: %w", err)
	case len(line) > maxTokenLine:
		return "", usageError{errors.New("--token-file -: the first line of stdin is far longer than a bootstrap token ID.SECRET: pass the token alone on one line")}
	case line == "":
		return "", usageError{errors.New("--token-file -: stdin is empty: pass the token ID.SECRET on one line")}
	}
	return trimNewline(line), nil
}

// trimNewline removes one trailing newline (LF or CRLF), as a file written
// by echo or an editor ends.
func trimNewline(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}

// lookupTokenEnv returns TLSBOOT_TOKEN and removes it from the environment
// of the process, so that the commands run later (--on-rotate hooks, a
// re-executed 'tlsboot run') do not inherit the token. (The kernel's copy
// in /proc/PID/environ stays, readable only by this user and root.)
func lookupTokenEnv() string {
	v, ok := os.LookupEnv(tokenEnv)
	if ok {
		os.Unsetenv(tokenEnv)
	}
	return v
}
