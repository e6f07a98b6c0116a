// Package mdsection keeps one generated section of a Markdown file up to
// date, so that each benchmark rewrites only its own part of BENCHMARKS.md.
package mdsection

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// Update replaces the section called name in the file at path with body,
// or appends it when the file has none. The section is delimited by HTML
// comments that Markdown renderers do not show, and ends with the commit
// the figures were measured at (git describe of the working tree, marked
// -dirty when it had changes), so that a reader can tell which code they
// describe.
func Update(path, name, body string) error {
	begin := fmt.Sprintf("<!-- %s: begin -->", name)
	end := fmt.Sprintf("<!-- %s: end -->", name)
	section := begin + "\n" + strings.TrimSpace(body) + "\n\n" + measuredAt() + "\n" + end
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(data)
	if i, j := strings.Index(s, begin), strings.Index(s, end); i >= 0 && j > i {
		s = s[:i] + section + s[j+len(end):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += section + "\n"
	}
	return atomicfile.WriteFile(path, []byte(s), 0o644)
}

// measuredAt names the commit of the working tree (a variable for the
// test).
var measuredAt = func() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err != nil {
		return "_Measured outside a git checkout._"
	}
	return fmt.Sprintf("_Measured at commit %s._", strings.TrimSpace(string(out)))
}
