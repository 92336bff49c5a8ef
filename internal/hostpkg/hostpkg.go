// Package hostpkg reads what the host's Debian package manager has
// installed and what its apt sources serve, so that a host check can tell
// "this machine got less than the README promises" from "nothing better
// exists here". It compares versions the way dpkg does.
package hostpkg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNotInstalled: dpkg knows no installed package of that name.
var ErrNotInstalled = errors.New("package not installed")

// Offer is one version of a package that an apt source serves.
type Offer struct {
	Version string
	// Source is the archive it comes from ("... bookworm-backports/main amd64 Packages").
	Source string
}

// Installed is the installed version of pkg.
func Installed(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}\t${Version}", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", pkg, ErrNotInstalled)
	}
	status, version, _ := strings.Cut(string(out), "\t")
	if !strings.HasSuffix(status, " installed") || version == "" {
		return "", fmt.Errorf("%s: %w (%s)", pkg, ErrNotInstalled, status)
	}
	return version, nil
}

// Served is every version of pkg the host's apt sources serve (apt-cache
// madison), none where apt knows none.
func Served(ctx context.Context, pkg string) ([]Offer, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "madison", pkg).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache madison %s: %w", pkg, err)
	}
	return ParseMadison(out), nil
}

// ParseMadison reads apt-cache madison's "name | version | source" lines.
func ParseMadison(out []byte) []Offer {
	var offers []Offer
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := strings.Split(string(line), "|")
		if len(f) != 3 {
			continue
		}
		v := strings.TrimSpace(f[1])
		if v == "" {
			continue
		}
		offers = append(offers, Offer{Version: v, Source: strings.TrimSpace(f[2])})
	}
	return offers
}

// Newest is the highest version offered, ok false for none.
func Newest(offers []Offer) (Offer, bool) {
	var best Offer
	for _, o := range offers {
		if best.Version == "" || Compare(o.Version, best.Version) > 0 {
			best = o
		}
	}
	return best, best.Version != ""
}

// Compare orders two Debian versions as dpkg --compare-versions does:
// negative, zero or positive as a is lower than, equal to or higher than b.
func Compare(a, b string) int {
	ea, ua, ra := split(a)
	eb, ub, rb := split(b)
	if c := compareNumber(ea, eb); c != 0 {
		return c
	}
	if c := compareFragment(ua, ub); c != 0 {
		return c
	}
	return compareFragment(ra, rb)
}

// split parses [epoch:]upstream[-revision].
func split(v string) (epoch, upstream, revision string) {
	epoch = "0"
	if e, rest, ok := strings.Cut(v, ":"); ok {
		epoch, v = e, rest
	}
	upstream = v
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		upstream, revision = v[:i], v[i+1:]
	}
	return epoch, upstream, revision
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// order is dpkg's weight of a non-digit character: '~' sorts before
// everything, even the end of the string; letters before other characters.
func order(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	default:
		return int(c) + 256
	}
}

// compareFragment is dpkg's verrevcmp: alternating runs of non-digits
// (compared by order) and digits (compared as numbers).
func compareFragment(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && !isDigit(a[i]) || j < len(b) && !isDigit(b[j]) {
			if ac, bc := order(a, i), order(b, j); ac != bc {
				return ac - bc
			}
			i++
			j++
		}
		si, sj := i, j
		for i < len(a) && isDigit(a[i]) {
			i++
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		if c := compareNumber(a[si:i], b[sj:j]); c != 0 {
			return c
		}
	}
	return 0
}

// compareNumber compares two runs of decimal digits of any length.
func compareNumber(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
