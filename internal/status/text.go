package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report for people: one block per certificate, then
// the kubeconfig.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	now := r.Time
	for _, c := range r.Certificates {
		writeCertificate(tw, c, now)
	}
	if k := r.Kubeconfig; k != nil {
		fmt.Fprintf(tw, "kubeconfig\t%s\n", k.Path)
		if k.Server != "" {
			fmt.Fprintf(tw, "  server:\t%s\n", k.Server)
		}
		fmt.Fprintf(tw, "  uses client certificate:\t%s\n", yesNo(k.UsesStore, k.ClientCert))
		usable := "yes (offline check: loads, pair matches, inside validity)"
		if !k.Usable {
			usable = "no: " + k.Error
		}
		fmt.Fprintf(tw, "  usable:\t%s\n", usable)
	}
	return tw.Flush()
}

func writeCertificate(w io.Writer, c Certificate, now time.Time) {
	fmt.Fprintf(w, "%s certificate\t%s\n", c.Name, c.Path)
	fmt.Fprintf(w, "  state:\t%s\n", stateLine(c, now))
	if c.Subject != "" {
		fmt.Fprintf(w, "  subject:\t%s\n", c.Subject)
		fmt.Fprintf(w, "  issuer:\t%s\n", c.Issuer)
		if sans := append(append([]string{}, c.DNSNames...), c.IPAddresses...); len(sans) > 0 {
			fmt.Fprintf(w, "  SANs:\t%s\n", strings.Join(sans, ", "))
		}
		fmt.Fprintf(w, "  validity:\t%s to %s\n", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
		fmt.Fprintf(w, "  rotation due:\t%s\n", rotationLine(c, now))
	}
	if c.PendingKey != "" {
		fmt.Fprintf(w, "  pending key:\t%s (a bootstrap or renewal is in progress)\n", c.PendingKey)
	}
	if len(c.StaleFiles) > 0 {
		fmt.Fprintf(w, "  stale files:\t%d older pair files kept for rollback (the agent keeps the newest 5)\n", len(c.StaleFiles))
	}
}

func stateLine(c Certificate, now time.Time) string {
	switch c.State {
	case StateValid:
		return fmt.Sprintf("valid, %s left", human(c.NotAfter.Sub(now)))
	case StateExpired:
		return fmt.Sprintf("EXPIRED %s ago", human(now.Sub(c.NotAfter)))
	case StateNotYetValid:
		return fmt.Sprintf("NOT YET VALID for %s (check the clock)", human(c.NotBefore.Sub(now)))
	case StateMissing:
		if c.Name == "client" {
			return "MISSING: run 'tlsboot bootstrap' or 'tlsboot run'"
		}
		return "none"
	}
	return "UNREADABLE: " + c.Error
}

func rotationLine(c Certificate, now time.Time) string {
	if !c.RotationBy.After(now) {
		return "now (overdue)"
	}
	return fmt.Sprintf("between %s and %s (in %s to %s)", c.RotationFrom.Format(time.RFC3339), c.RotationBy.Format(time.RFC3339),
		human(max(c.RotationFrom.Sub(now), 0)), human(c.RotationBy.Sub(now)))
}

func yesNo(ok bool, detail string) string {
	if ok {
		return "yes"
	}
	if detail == "" {
		return "no"
	}
	return "no (" + detail + ")"
}

// human rounds d for reading: seconds under an hour, minutes above.
func human(d time.Duration) string {
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
