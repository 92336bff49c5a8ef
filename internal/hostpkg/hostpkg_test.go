package hostpkg

import (
	"context"
	"errors"
	"os/exec"
	"testing"
)

var versionCases = []struct {
	a, b string
	want int // sign
}{
	{"1.0", "1.0", 0},
	{"1.0", "1.1", -1},
	{"1:7.2+dfsg-7+deb12u16", "1:8.2", -1},
	{"1:10.0.2+ds-2+deb13u1~bpo12+1", "1:8.2", 1},
	{"1:8.2.0", "1:8.2", 1},
	{"1:8.2", "8.2", 1},
	{"0.0~20221219.0+ds1-4", "0.0~20231113", -1},
	{"0.0~20240729.0-4~bpo12+2", "0.0~20231113", 1},
	{"1.0~rc1", "1.0", -1},
	{"1.0", "1.0+b1", -1},
	{"1.0a", "1.0", 1},
	{"1.0-1", "1.0-1~bpo12+1", 1},
	{"1.00", "1.0", 0},
	{"2.10", "2.9", 1},
	{"1.0.", "1.0", 1},
	{"1:0", "99", 1},
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestCompare(t *testing.T) {
	for _, c := range versionCases {
		if got := sign(Compare(c.a, c.b)); got != c.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := sign(Compare(c.b, c.a)); got != -c.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

// TestCompareAgreesWithDpkg: the table, asked of dpkg itself.
func TestCompareAgreesWithDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg on this host")
	}
	for _, c := range versionCases {
		op := map[int]string{-1: "lt", 0: "eq", 1: "gt"}[c.want]
		if err := exec.Command("dpkg", "--compare-versions", c.a, op, c.b).Run(); err != nil {
			t.Errorf("dpkg says %q %s %q is false", c.a, op, c.b)
		}
	}
}

func TestParseMadison(t *testing.T) {
	out := []byte(`     runsc | 0.0~20240729.0-4~bpo12+2 | http://mirror.example/debian bookworm-backports/main amd64 Packages
     runsc | 0.0~20221219.0+ds1-4 | http://mirror.example/debian bookworm/main amd64 Packages
garbage line
  runsc |  | empty
`)
	got := ParseMadison(out)
	if len(got) != 2 || got[0].Version != "0.0~20240729.0-4~bpo12+2" || got[1].Source != "http://mirror.example/debian bookworm/main amd64 Packages" {
		t.Fatalf("got %+v", got)
	}
	n, ok := Newest(got)
	if !ok || n.Version != "0.0~20240729.0-4~bpo12+2" {
		t.Fatalf("newest %+v %v", n, ok)
	}
	if _, ok := Newest(nil); ok {
		t.Fatal("newest of nothing")
	}
}

// TestInstalledAndServed asks the host's own dpkg and apt: dpkg is
// installed and served wherever apt has package lists.
func TestInstalledAndServed(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("not a Debian host: no apt-cache")
	}
	ctx := context.Background()
	v, err := Installed(ctx, "dpkg")
	if err != nil || v == "" {
		t.Fatalf("dpkg's own version: %q %v", v, err)
	}
	if _, err := Installed(ctx, "codebench-no-such-package"); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("a missing package: %v, want ErrNotInstalled", err)
	}
	offers, err := Served(ctx, "dpkg")
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) == 0 {
		t.Skip("apt has no package lists here (apt-get update has not run)")
	}
	if n, _ := Newest(offers); Compare(n.Version, v) < 0 {
		t.Errorf("the sources serve dpkg %s at most, older than the installed %s", n.Version, v)
	}
}
