package policy

import (
	"fmt"
	"strconv"
)

// ICMP families, as icmps fields name them.
const (
	FamilyIPv4 = "IPv4"
	FamilyIPv6 = "IPv6"
)

// maxICMPFields is Cilium's limit of fields per icmps entry.
const maxICMPFields = 40

// icmpTypes are the ICMP type names Cilium accepts in icmps, by family.
var icmpTypes = map[string]map[string]uint8{
	FamilyIPv4: {
		"EchoReply":              0,
		"DestinationUnreachable": 3,
		"Redirect":               5,
		"Echo":                   8,
		"EchoRequest":            8,
		"RouterAdvertisement":    9,
		"RouterSelection":        10,
		"TimeExceeded":           11,
		"ParameterProblem":       12,
		"Timestamp":              13,
		"TimestampReply":         14,
		"Photuris":               40,
		"ExtendedEchoRequest":    42,
		"ExtendedEchoReply":      43,
	},
	FamilyIPv6: {
		"DestinationUnreachable":                 1,
		"PacketTooBig":                           2,
		"TimeExceeded":                           3,
		"ParameterProblem":                       4,
		"EchoRequest":                            128,
		"EchoReply":                              129,
		"MulticastListenerQuery":                 130,
		"MulticastListenerReport":                131,
		"MulticastListenerDone":                  132,
		"RouterSolicitation":                     133,
		"RouterAdvertisement":                    134,
		"NeighborSolicitation":                   135,
		"NeighborAdvertisement":                  136,
		"RedirectMessage":                        137,
		"RouterRenumbering":                      138,
		"ICMPNodeInformationQuery":               139,
		"ICMPNodeInformationResponse":            140,
		"InverseNeighborDiscoverySolicitation":   141,
		"InverseNeighborDiscoveryAdvertisement":  142,
		"HomeAgentAddressDiscoveryRequest":       144,
		"HomeAgentAddressDiscoveryReply":         145,
		"MobilePrefixSolicitation":               146,
		"MobilePrefixAdvertisement":              147,
		"DuplicateAddressRequestCodeSuffix":      157,
		"DuplicateAddressConfirmationCodeSuffix": 158,
		"ExtendedEchoRequest":                    160,
		"ExtendedEchoReply":                      161,
	},
}

// parseICMPType reads an icmps type of family: a number 0-255 (written as a
// number or a string of digits without leading zeros) or one of Cilium's
// names for that family.
func parseICMPType(s, family string) (uint8, error) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		if len(s) > 1 && s[0] == '0' {
			return 0, fmt.Errorf("%q has a leading zero; write %d", s, n)
		}
		return uint8(n), nil
	}
	if t, ok := icmpTypes[family][s]; ok {
		return t, nil
	}
	other := FamilyIPv6
	if family == FamilyIPv6 {
		other = FamilyIPv4
	}
	if _, ok := icmpTypes[other][s]; ok {
		return 0, fmt.Errorf("%q is an %s type name, not an %s one (set family: %s)", s, other, family, other)
	}
	return 0, fmt.Errorf("%q is not an ICMP type: a number 0-255 or one of Cilium's %s type names (EchoRequest, EchoReply, DestinationUnreachable, ...)", s, family)
}
