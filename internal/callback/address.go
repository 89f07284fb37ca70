package callback

import (
	"fmt"
	"net/netip"
	"syscall"
)

// refusePrivate is the dialer's Control: it runs with the address about
// to be connected to, after name resolution, for every connection, and
// refuses one that is not Public.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address and port", ErrAddress, address)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address (allow_private allows it)", ErrAddress, ap.Addr())
	}
	return nil
}

// nonPublic are the prefixes Public refuses beyond the ones netip
// classifies: "this network", shared address space (carrier-grade NAT),
// the IETF protocol assignments, the documentation and benchmarking
// ranges, the reserved class E, and the IPv4/IPv6 translation, 6to4 and
// discard prefixes, through which an inner address could be reached.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("100::/64"),
}

// Public reports whether a is a public unicast address: not loopback,
// private (RFC 1918, fc00::/7), link-local (the cloud metadata address
// 169.254.169.254 included), multicast, unspecified, nor in one of
// nonPublic's ranges. An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is
// judged as its IPv4 address.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
