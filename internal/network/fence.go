package network

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// The fences are one nftables table the worker owns (inet <table>): it is
// made whole when the manager starts (replacing what a killed worker left)
// and deleted when it closes. Guests are known by their host-side veth
// (set "guests") and the address each was given (set "pairs"), so a guest
// cannot escape a rule by forging its source address.
//
// Per guest interface:
//   - input: everything dropped. A guest never reaches the host itself: not
//     its gateway address, not any other address of the host, not a
//     listening socket;
//   - forward, from a guest: IPv4 only, its own source address only, never
//     to link-local (metadata services), multicast or broadcast addresses,
//     never to the deny set (private ranges, CGNAT, a cloud's wire server,
//     the broker's hosts) unless the allow-list names the address inside
//     it, only to the allow-list (empty: nowhere), new connections
//     rate-limited;
//   - forward, to a guest: only replies (established, related); so no guest
//     reaches another, and nothing outside opens a connection to a guest.
func fenceRuleset(table string, allow, deny []netip.Prefix, connPerSecond, bandwidthKBps int) string {
	var b strings.Builder
	set := func(name string, ps []netip.Prefix) {
		fmt.Fprintf(&b, "  set %s { type ipv4_addr; flags interval; auto-merge;", name)
		if len(ps) > 0 {
			var els []string
			for _, p := range ps {
				els = append(els, p.Masked().String())
			}
			fmt.Fprintf(&b, " elements = { %s };", strings.Join(els, ", "))
		}
		b.WriteString(" }\n")
	}
	fmt.Fprintf(&b, "table inet %s {\n", table)
	b.WriteString("  set guests { type ifname; }\n")
	b.WriteString("  set pairs { type ifname . ipv4_addr; }\n")
	set("allow", allow)
	set("deny", DefaultDeny)
	set("named", Named(allow, DefaultDeny))
	set("hosts", deny)
	set("named_hosts", Named(allow, deny))
	b.WriteString("  set rate { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }\n")
	// Per guest, each way: a byte rate with a quarter second's burst.
	bw := ""
	if bandwidthKBps > 0 {
		b.WriteString("  set bw_up { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }\n")
		b.WriteString("  set bw_down { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }\n")
		bw = fmt.Sprintf("limit rate over %d kbytes/second burst %d kbytes", bandwidthKBps, max(bandwidthKBps/4, 16))
	}
	b.WriteString("  chain input {\n    type filter hook input priority filter - 10; policy accept;\n")
	b.WriteString("    iifname @guests drop\n  }\n")
	b.WriteString("  chain forward {\n    type filter hook forward priority filter - 10; policy accept;\n")
	if bw != "" {
		fmt.Fprintf(&b, "    oifname @guests update @bw_down { ip daddr %s } drop\n", bw)
	}
	b.WriteString("    oifname @guests ct state established,related accept\n")
	b.WriteString("    oifname @guests drop\n")
	b.WriteString("    iifname @guests meta nfproto != ipv4 drop\n")
	if bw != "" {
		fmt.Fprintf(&b, "    iifname @guests update @bw_up { ip saddr %s } drop\n", bw)
	}
	b.WriteString("    iifname @guests iifname . ip saddr != @pairs drop\n")
	b.WriteString("    iifname @guests ip daddr { 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 255.255.255.255 } drop\n")
	b.WriteString("    iifname @guests ip daddr @deny ip daddr != @named drop\n")
	// The hosts of our own (the broker's): opened only by an allow entry
	// inside one (its very address), not by one naming its subnet.
	b.WriteString("    iifname @guests ip daddr @hosts ip daddr != @named_hosts drop\n")
	b.WriteString("    iifname @guests ip daddr != @allow drop\n")
	fmt.Fprintf(&b, "    iifname @guests ct state new update @rate { ip saddr limit rate over %d/second burst %d packets } drop\n", connPerSecond, 2*connPerSecond)
	b.WriteString("    iifname @guests accept\n  }\n}\n")
	return b.String()
}

// DefaultDeny are what no guest reaches under any allow-list that does not
// name the address inside them: the private ranges (RFC 1918), carrier-
// grade NAT (100.64/10, where one cloud keeps its metadata service), link-
// local (metadata services) and Azure's wire server.
var DefaultDeny = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("168.63.129.16/32"),
}

// Named are the allow-list entries that name addresses inside the deny
// set (each inside a denied range, not a blanket over it): those stay
// reachable. 0.0.0.0/0 or 10.0.0.0/7 names nothing; 10.99.1.0/24 does.
func Named(allow, deny []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range allow {
		for _, d := range deny {
			if a.Bits() >= d.Bits() && d.Contains(a.Addr()) {
				out = append(out, a.Masked())
				break
			}
		}
	}
	return out
}

// nft runs the nft binary with script on its standard input.
func nft(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// installFences replaces the table with a fresh one, in one transaction.
// installFences: cfg.Deny are the hosts of our own no guest reaches
// (DefaultDeny applies besides).
func installFences(ctx context.Context, table string, cfg Config) error {
	rules := fenceRuleset(table, cfg.Allow, cfg.Deny, cfg.ConnPerSecond, cfg.BandwidthKBps)
	script := fmt.Sprintf("add table inet %s\ndelete table inet %s\n%s", table, table, rules)
	return nft(ctx, script)
}

// removeFences deletes the table (gone already is fine).
func removeFences(ctx context.Context, table string) error {
	return nft(ctx, fmt.Sprintf("add table inet %s\ndelete table inet %s\n", table, table))
}

// fenceGuest puts a guest's interface and address under the fences.
func fenceGuest(ctx context.Context, table, ifname string, addr netip.Addr) error {
	return nft(ctx, fmt.Sprintf("add element inet %s guests { %q }\nadd element inet %s pairs { %q . %s }\n",
		table, ifname, table, ifname, addr))
}

// unfenceGuest removes them; an element already gone is not an error.
func unfenceGuest(ctx context.Context, table, ifname string, addr netip.Addr) error {
	// "destroy" ignores missing elements only in nft 1.0.8+; delete them
	// one by one and tolerate absence.
	var errs []string
	for _, s := range []string{
		fmt.Sprintf("delete element inet %s pairs { %q . %s }\n", table, ifname, addr),
		fmt.Sprintf("delete element inet %s guests { %q }\n", table, ifname),
	} {
		if err := nft(ctx, s); err != nil && !strings.Contains(err.Error(), "No such file or directory") {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// tableExists reports whether the table is there (tests, doctor).
func tableExists(ctx context.Context, table string) bool {
	return exec.CommandContext(ctx, "nft", "list", "table", "inet", table).Run() == nil
}
