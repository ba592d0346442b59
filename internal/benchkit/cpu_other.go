//go:build !unix

package benchkit

import "time"

// ProcessCPU is not measured on this platform: always 0, and no CPU
// figures are reported.
func ProcessCPU() time.Duration { return 0 }
