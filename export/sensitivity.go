package export

import "github.com/p2p-payer/p2p/fhir"

// sensitivityCodes are the v3-ActCode information-sensitivity codes (value
// set v3-ActInformationSensitivityPolicy) for categories of health data
// that US federal or state law lets a member keep out of a disclosure:
// mental and behavioural health, substance use (42 CFR Part 2), HIV and
// sexually transmitted disease, genetic and reproductive health, abuse.
// A resource labelled with any of them is "sensitive" in the HRex consent
// sense and is left out under a regular consent.
var sensitivityCodes = map[string]bool{
	"BH": true, "MH": true, "PSY": true, "PSYTHPN": true, "COGN": true, "DVD": true, "EMOTDIS": true,
	"ETH": true, "SUD": true, "ETHUD": true, "OPIOIDUD": true,
	"HIV": true, "STD": true,
	"GDIS": true, "SEX": true, "PREGNANT": true, "SCA": true,
	"SDV": true, "MST": true, "TBOO": true,
}

// SensitiveLabel reports whether a meta.security coding marks a resource
// as sensitive: one of the sensitivity codes above, or the confidentiality
// codes R (restricted) and V (very restricted).
func SensitiveLabel(system, code string) bool {
	switch system {
	case fhir.SystemActCode:
		return sensitivityCodes[code]
	case fhir.SystemConfidentiality:
		return code == "R" || code == "V"
	}
	return false
}
