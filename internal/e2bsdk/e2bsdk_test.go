package e2bsdk

import "testing"

func TestAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"v20.18.1", true}, {"v20.20.2", true}, {"v22.0.0", true}, {"v20.18.0", false}, {"v20.9.0", false},
		{"v18.19.1", false}, {"v100.1.1", true}, {"garbage", false},
	} {
		if got := atLeast(tc.v, MinNode); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.v, got, tc.want)
		}
	}
}
