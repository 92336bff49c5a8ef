package boot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/codebench/codebench/internal/agentproto"
)

// ConfigureNet brings the guest's network interface up as cfg says: its
// MAC, its address as a /32, a route to the gateway on the link and a
// default route through it. Everything leaves through the host, whose
// fences decide; no two guests share a link. Applied to a guest that has
// no interface (none was asked for), it fails.
func ConfigureNet(cfg *agentproto.Net) error {
	mac, err := net.ParseMAC(cfg.MAC)
	if err != nil {
		return fmt.Errorf("net: mac: %w", err)
	}
	pfx, err := netip.ParsePrefix(cfg.Addr)
	if err != nil || !pfx.Addr().Is4() {
		return fmt.Errorf("net: address %q is not an IPv4 prefix", cfg.Addr)
	}
	gw, err := netip.ParseAddr(cfg.Gateway)
	if err != nil || !gw.Is4() {
		return fmt.Errorf("net: gateway %q is not an IPv4 address", cfg.Gateway)
	}
	link, err := guestLink()
	if err != nil {
		return err
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("net: down: %w", err)
	}
	if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
		return fmt.Errorf("net: set mac: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("net: address: %w", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("net: up: %w", err)
	}
	gwIP := net.IP(gw.AsSlice())
	onLink := &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: gwIP, Mask: net.CIDRMask(32, 32)}}
	if err := netlink.RouteReplace(onLink); err != nil {
		return fmt.Errorf("net: route to the gateway: %w", err)
	}
	def := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gwIP,
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := netlink.RouteReplace(def); err != nil {
		return fmt.Errorf("net: default route: %w", err)
	}
	return nil
}

// LoopbackUp brings the guest's loopback interface up.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("net: loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("net: loopback up: %w", err)
	}
	return nil
}

// guestLink is the guest's one Ethernet interface.
func guestLink() (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("net: %w", err)
	}
	for _, l := range links {
		if l.Type() == "device" && l.Attrs().Flags&net.FlagLoopback == 0 && len(l.Attrs().HardwareAddr) == 6 {
			return l, nil
		}
	}
	return nil, errors.New("net: this guest has no network interface")
}
