package network

import (
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestNamed: an allow entry inside a denied range names it; a blanket
// over it does not.
func TestNamed(t *testing.T) {
	got := Named(prefixes("0.0.0.0/0", "10.0.0.0/7", "10.99.1.0/24", "192.168.0.0/16", "8.8.8.8/32", "100.100.100.200/32"), DefaultDeny)
	want := prefixes("10.99.1.0/24", "192.168.0.0/16", "100.100.100.200/32")
	if !slices.Equal(got, want) {
		t.Fatalf("named %v, want %v", got, want)
	}
}

// TestFenceRulesetParses: nft accepts the ruleset (checked, not applied),
// with overlapping deny entries (a broker inside a private range) and an
// allow-list that names addresses inside the deny set.
func TestFenceRulesetParses(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("capability nft: not installed")
	}
	rules := fenceRuleset("codebench_check", prefixes("0.0.0.0/0", "10.99.1.0/24", "198.51.100.7/32"),
		prefixes("10.1.2.3/32", "198.51.100.7/32", "10.99.1.2/32"), 20, 1000)
	cmd := exec.Command("nft", "-c", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft refuses the ruleset: %v\n%s\n%s", err, out, rules)
	}
}
