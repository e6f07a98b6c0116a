package agent

import "testing"

func TestReleaseExecutableEnabled(t *testing.T) {
	for _, tc := range []struct {
		value string
		set   bool
		want  bool
	}{
		{set: false, want: true},
		{value: "1", set: true, want: true},
		{value: "true", set: true, want: true},
		{value: "0", set: true, want: false},
		{value: "false", set: true, want: false},
		{value: "nonsense", set: true, want: true},
	} {
		t.Run(tc.value, func(t *testing.T) {
			if tc.set {
				t.Setenv(ReleaseExecutableEnv, tc.value)
			}
			if got := releaseExecutableEnabled(); got != tc.want {
				t.Errorf("%s=%q (set %v): enabled = %v, want %v", ReleaseExecutableEnv, tc.value, tc.set, got, tc.want)
			}
		})
	}
}
