package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"

	rfhir "github.com/p2p-payer/p2p/fhir"
)

// BulkManifestVersion is the version of the BulkManifest format.
const BulkManifestVersion = 1

// ProvenanceType is the resource type of the Provenance file of a served
// bulk export.
const ProvenanceType = "Provenance"

// BulkManifest describes a bulk export served to a partner (package pdex
// serves it; activities.PrepareServedExport writes it): what the FHIR Bulk
// Data manifest lists, and for each file the member and consent scope it
// was built under, so that every download re-checks that member's grant.
// It is stored as an artifact by digest, like Manifest; it holds ids,
// digests and counts, never PHI.
type BulkManifest struct {
	Version           int        `json:"version"`
	TransferID        string     `json:"transfer_id"`
	Requester         string     `json:"requester"`
	Request           string     `json:"request"`          // the kick-off URL
	TransactionTime   string     `json:"transaction_time"` // RFC 3339, UTC
	Expires           string     `json:"expires"`          // RFC 3339, UTC: files are withdrawn then
	Files             []BulkFile `json:"files"`
	ExcludedSensitive int        `json:"excluded_sensitive"`
}

// BulkFile is one NDJSON file of a served bulk export: one resource type
// of one member.
type BulkFile struct {
	Type         string `json:"type"`
	MemberID     string `json:"member_id"`
	ConsentScope string `json:"consent_scope"`
	// Sensitive: the file holds resources a regular consent leaves out (or
	// Provenance of such), so it is served only under a sensitive grant.
	Sensitive bool   `json:"sensitive,omitempty"`
	Count     int    `json:"count"`
	SHA256    string `json:"sha256"`
	Bytes     int64  `json:"bytes"`
}

// ParseBulkManifest decodes a BulkManifest and checks its version.
func ParseBulkManifest(b []byte) (BulkManifest, error) {
	var m BulkManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return BulkManifest{}, fmt.Errorf("export: bulk manifest is not JSON: %w", err)
	}
	if m.Version != BulkManifestVersion {
		return BulkManifest{}, fmt.Errorf("export: bulk manifest version %d, want %d", m.Version, BulkManifestVersion)
	}
	return m, nil
}

// File returns the file with digest, if the manifest lists it.
func (m BulkManifest) File(digest string) (BulkFile, bool) {
	for _, f := range m.Files {
		if f.SHA256 == digest {
			return f, true
		}
	}
	return BulkFile{}, false
}

// ProvenanceFile returns the Provenance NDJSON of files: one Provenance per
// resource, targeting it, recorded at recorded (an instant) and naming
// transmitter as the transmitter (PDex: the payer that sends the data).
// Provenance ids derive from the target's type and id, so the file is the
// same for the same files. It returns false when files hold no resource.
func ProvenanceFile(files []File, transmitter rfhir.Reference, recorded string) (File, bool, error) {
	var buf bytes.Buffer
	n := 0
	for _, f := range files {
		sc := bufio.NewScanner(bytes.NewReader(f.Data))
		sc.Buffer(make([]byte, 0, 64*1024), len(f.Data)+1)
		for sc.Scan() {
			var head struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &head); err != nil || head.ID == "" {
				return File{}, false, fmt.Errorf("export: provenance: a line of %s is not a resource with an id", f.Name)
			}
			target := head.ResourceType + "/" + head.ID
			p := rfhir.Provenance{
				ResourceType: "Provenance", ID: "prov-" + Digest([]byte(target))[:32],
				Target: []rfhir.Reference{{Reference: target}}, Recorded: recorded,
				Agent: []rfhir.ProvenanceAgent{rfhir.Transmitter(transmitter)},
			}
			b, err := json.Marshal(p)
			if err != nil {
				return File{}, false, err
			}
			buf.Write(b)
			buf.WriteByte('\n')
			n++
		}
		if err := sc.Err(); err != nil {
			return File{}, false, fmt.Errorf("export: provenance: %w", err)
		}
	}
	if n == 0 {
		return File{}, false, nil
	}
	return File{Type: ProvenanceType, Name: ProvenanceType + ".ndjson", Count: n, Data: buf.Bytes(), SHA256: Digest(buf.Bytes())}, true, nil
}
