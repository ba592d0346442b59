package egress

import "net/netip"

// Address classes a call may not reach. The private ones are reachable
// when a Policy allows private networks (a partner configured with
// allow_private_network: the dev sandbox, a partner on a private link);
// the others never are: no partner lives on them, and the link-local range
// holds cloud metadata services (169.254.169.254), whose credentials are
// the classic prize of SSRF.
const (
	ClassPublic      = ""
	ClassLoopback    = "loopback"
	ClassPrivate     = "private"
	ClassSharedNAT   = "shared address space (CGNAT)"
	ClassLinkLocal   = "link-local"
	ClassUnspecified = "unspecified"
	ClassMulticast   = "multicast"
	ClassReserved    = "reserved"
)

var (
	cgnat    = netip.MustParsePrefix("100.64.0.0/10")
	reserved = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),       // "this network": 0.0.0.0 reaches the local host
		netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
		netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
		netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
		netip.MustParsePrefix("100::/64"),        // discard-only
		netip.MustParsePrefix("2001:db8::/32"),   // documentation
		netip.MustParsePrefix("ff00::/8"),        // multicast (also caught by IsMulticast)
		netip.MustParsePrefix("2001:10::/28"),    // ORCHID
		netip.MustParsePrefix("::ffff:0:0:0/96"), // SIIT: IPv4-translated
	}
	// IPv6 forms that carry an IPv4 address inside: the embedded address
	// is what the network reaches, so it is the one classified.
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64Site = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour = netip.MustParsePrefix("2002::/16")
	v4Compat  = netip.MustParsePrefix("::/96")
)

// Class returns the class of ip: ClassPublic ("") for an address a call
// may reach under any policy, else the reason it is refused. IPv4-mapped
// (::ffff:a.b.c.d), IPv4-compatible, NAT64 and 6to4 addresses are
// classified by the IPv4 address they embed.
func Class(ip netip.Addr) string {
	ip = embedded(ip.Unmap())
	switch {
	case !ip.IsValid(), ip.IsUnspecified():
		return ClassUnspecified
	case ip.IsLoopback():
		return ClassLoopback
	case ip.IsPrivate(): // 10/8, 172.16/12, 192.168/16, fc00::/7
		return ClassPrivate
	case cgnat.Contains(ip):
		return ClassSharedNAT
	case ip.IsLinkLocalUnicast():
		return ClassLinkLocal
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return ClassMulticast
	}
	for _, p := range reserved {
		if p.Contains(ip) {
			return ClassReserved
		}
	}
	return ClassPublic
}

// embedded returns the IPv4 address an IPv6 transition address carries,
// or ip.
func embedded(ip netip.Addr) netip.Addr {
	if !ip.Is6() {
		return ip
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip), nat64Site.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6]))
	case v4Compat.Contains(ip) && ip != netip.IPv6Unspecified() && ip != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte(b[12:16]))
	}
	return ip
}

// PrivateClass reports whether class is one that a Policy with
// AllowPrivate may reach: loopback, private and shared (CGNAT) ranges.
// Link-local (cloud metadata), unspecified, multicast and reserved
// addresses are refused under every policy.
func PrivateClass(class string) bool {
	switch class {
	case ClassLoopback, ClassPrivate, ClassSharedNAT:
		return true
	}
	return false
}

// Allowed returns "" if a policy that does (allowPrivate) or does not
// allow private networks may reach ip, else why not.
func Allowed(ip netip.Addr, allowPrivate bool) string {
	c := Class(ip)
	if c == ClassPublic || (allowPrivate && PrivateClass(c)) {
		return ""
	}
	return c + " address"
}
